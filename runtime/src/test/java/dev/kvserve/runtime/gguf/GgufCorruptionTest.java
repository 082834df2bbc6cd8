package dev.kvserve.runtime.gguf;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.runtime.ModelFormatException;
import dev.kvserve.runtime.SharedModels;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowable;

/** Damaged GGUF files must give a ModelFormatException that says what is wrong, and nothing else. */
class GgufCorruptionTest {

    @TempDir
    Path dir;
    Path damaged;
    byte[] stories;

    @BeforeEach
    void setUp() throws Exception {
        damaged = dir.resolve("damaged.gguf");
        stories = Files.readAllBytes(SharedModels.file("stories260K.gguf"));
    }

    /** A small valid file with metadata of several types and three tensors, written by GgufWriter. */
    Path smallFile() throws Exception {
        Path file = dir.resolve("small.gguf");
        try (GgufWriter w = new GgufWriter(file)) {
            w.putString("general.architecture", "llama");
            w.putUInt32("llama.block_count", 1);
            w.putFloat32("llama.rope.freq_base", 10000f);
            w.putArray("tokenizer.ggml.tokens", GgufValueType.STRING, new String[] {"<unk>", "<s>", "a"});
            w.putArray("tokenizer.ggml.scores", GgufValueType.FLOAT32, new float[] {0, 0, -1});
            w.putArray("nested", GgufValueType.ARRAY, new GgufArray[] {new GgufArray(GgufValueType.INT16, new short[] {1, 2})});
            w.addTensor("a", GgmlType.F32, 8, 2);
            w.addTensor("b", GgmlType.Q8_0, 32);
            w.addTensor("c", GgmlType.F16, 4);
            w.writeTensor("a", MemorySegment.ofArray(new byte[64]));
            w.writeTensor("b", MemorySegment.ofArray(new byte[34]));
            w.writeTensor("c", MemorySegment.ofArray(new byte[8]));
        }
        return file;
    }

    ModelFormatException openExpectingFailure(byte[] content) throws Exception {
        Files.write(damaged, content);
        Throwable thrown = catchThrowable(() -> GgufFile.open(damaged).close());
        assertThat(thrown).as("opening %d damaged bytes", content.length).isExactlyInstanceOf(ModelFormatException.class);
        ModelFormatException e = (ModelFormatException) thrown;
        assertThat(e.file()).isEqualTo(damaged);
        assertThat(e.getMessage()).startsWith(damaged.toString());
        return e;
    }

    @Test
    void everyTruncationOfASmallFileIsReported() throws Exception {
        byte[] full = Files.readAllBytes(smallFile());
        long dataEnd;
        try (GgufFile f = GgufFile.open(dir.resolve("small.gguf"))) {
            GgufTensorInfo last = f.tensorInfos().getLast();
            dataEnd = f.dataOffset() + last.offset() + last.byteSize();
        }
        for (int length = 0; length < dataEnd; length++) {
            ModelFormatException e = openExpectingFailure(Arrays.copyOf(full, length));
            assertThat(e.getMessage()).containsAnyOf("truncated", "beyond the end of the file", "remaining bytes");
        }
        // only the zero padding after the last tensor may go missing
        for (long length = dataEnd; length <= full.length; length++) {
            Files.write(damaged, Arrays.copyOf(full, (int) length));
            try (GgufFile f = GgufFile.open(damaged)) {
                assertThat(f.tensors()).hasSize(3);
            }
        }
    }

    @Test
    void truncatedStories260kIsReportedAtHeaderAndDataOffsets() throws Exception {
        for (int length = 0; length < 14176; length += 97) openExpectingFailure(Arrays.copyOf(stories, length));
        for (int length : new int[] {14176, 14177, 14176 + 131071, 600_000, stories.length - 1}) {
            ModelFormatException e = openExpectingFailure(Arrays.copyOf(stories, length));
            assertThat(e.tensor()).isNotNull();
            assertThat(e.getMessage()).contains("beyond the end of the file at " + length);
        }
    }

    @Test
    void badMagic() throws Exception {
        byte[] b = stories.clone();
        b[0] = 'G';
        b[1] = 'G';
        b[2] = 'M';
        b[3] = 'L';
        assertThat(openExpectingFailure(b)).hasMessageContaining("bad magic 0x47474d4c (\"GGML\"): not a GGUF file");
    }

    @Test
    void versionsOtherThan2And3() throws Exception {
        assertThat(openExpectingFailure(withInt(stories, 4, 4))).hasMessageContaining("unknown GGUF version 4");
        assertThat(openExpectingFailure(withInt(stories, 4, 1))).hasMessageContaining("GGUF version 1 is not supported");
        assertThat(openExpectingFailure(withInt(stories, 4, Integer.reverseBytes(3)))).hasMessageContaining("big-endian");
        assertThat(openExpectingFailure(withInt(stories, 4, -1))).hasMessageContaining("unknown GGUF version 4294967295");
    }

    @Test
    void version2ReadsLikeVersion3() throws Exception {
        Files.write(damaged, withInt(stories, 4, 2));
        try (GgufFile f = GgufFile.open(damaged)) {
            assertThat(f.version()).isEqualTo(2);
            assertThat(f.tensors()).hasSize(48);
        }
    }

    @Test
    void absurdCounts() throws Exception {
        assertThat(openExpectingFailure(withLong(stories, 8, 1L << 40)))
                .hasMessageContaining("header claims 1099511627776 tensors");
        assertThat(openExpectingFailure(withLong(stories, 16, -1L)))
                .hasMessageContaining("header claims 18446744073709551615 metadata key/value pairs");
        // the first pair is tokenizer.ggml.tokens: key length at 24, key at 32, type at 53, element type at 57, count at 61
        assertThat(new String(stories, 32, 21, StandardCharsets.UTF_8)).isEqualTo("tokenizer.ggml.tokens");
        assertThat(openExpectingFailure(withLong(stories, 61, 1L << 61)))
                .hasMessageContaining("metadata array 'tokenizer.ggml.tokens' claims 2305843009213693952 elements of type STRING");
    }

    @Test
    void hugeStringLengths() throws Exception {
        assertThat(openExpectingFailure(withLong(stories, 24, 0x4000_0000_0000_0000L)))
                .hasMessageContaining("string length 4611686018427387904 of the key of metadata pair #0 at offset 24 exceeds");
        // the first token's own length, inside the array
        assertThat(openExpectingFailure(withLong(stories, 69, -2L)))
                .hasMessageContaining("string length 18446744073709551614 of element 0 of metadata array 'tokenizer.ggml.tokens'");
        long nameLength = infoOffset("blk.0.attn_q.weight");
        ModelFormatException e = openExpectingFailure(withLong(stories, nameLength, 1L << 50));
        assertThat(e).hasMessageContaining("string length 1125899906842624 of the name of tensor #3");
    }

    @Test
    void unknownValueTypes() throws Exception {
        assertThat(openExpectingFailure(withInt(stories, 53, 13)))
                .hasMessageContaining("metadata key 'tokenizer.ggml.tokens' has unknown value type 13");
        assertThat(openExpectingFailure(withInt(stories, 57, 77)))
                .hasMessageContaining("metadata array 'tokenizer.ggml.tokens' has unknown element type 77");
    }

    @Test
    void duplicateKeys() throws Exception {
        int at = indexOf(stories, "tokenizer.ggml.eos_token_id".getBytes(StandardCharsets.UTF_8));
        byte[] b = stories.clone();
        System.arraycopy("tokenizer.ggml.bos_token_id".getBytes(StandardCharsets.UTF_8), 0, b, at, 27);
        assertThat(openExpectingFailure(b)).hasMessageContaining("duplicate metadata key 'tokenizer.ggml.bos_token_id'");
    }

    @Test
    void tensorOffsetOutOfRange() throws Exception {
        long info = infoOffset("blk.2.ffn_up.weight");
        long offsetField = info + 8 + "blk.2.ffn_up.weight".length() + 4 + 2 * 8 + 4;
        assertThat(readLong(stories, offsetField)).isEqualTo(763392); // from the Python walk of the header
        ModelFormatException e = openExpectingFailure(withLong(stories, offsetField, 1L << 40));
        assertThat(e.tensor()).isEqualTo("blk.2.ffn_up.weight");
        assertThat(e).hasMessageContaining("tensor 'blk.2.ffn_up.weight': data [1099511641952, 1099511685984) lies beyond the end of the file at 1185376");
        // an offset close to 2^64 must not wrap around into the file
        assertThat(openExpectingFailure(withLong(stories, offsetField, -32L))).hasMessageContaining("blk.2.ffn_up.weight");
    }

    @Test
    void misalignedTensorOffset() throws Exception {
        long info = infoOffset("blk.2.ffn_up.weight");
        long offsetField = info + 8 + "blk.2.ffn_up.weight".length() + 4 + 2 * 8 + 4;
        assertThat(openExpectingFailure(withLong(stories, offsetField, 763392 + 4)))
                .hasMessageContaining("tensor 'blk.2.ffn_up.weight': data offset 763396 is not a multiple of the alignment 32");
    }

    @Test
    void unknownAndUnsupportedTensorTypes() throws Exception {
        long info = infoOffset("output.weight");
        long typeField = info + 8 + "output.weight".length() + 4 + 2 * 8;
        assertThat(readInt(stories, typeField)).isZero();
        ModelFormatException e = openExpectingFailure(withInt(stories, typeField, 99));
        assertThat(e.tensor()).isEqualTo("output.weight");
        assertThat(e).hasMessageContaining("has unknown ggml type id 99");
        // I32 has F32's size, so the file stays consistent: it opens, and compute use is refused by type
        Files.write(damaged, withInt(stories, typeField, GgmlType.I32.id));
        try (GgufFile f = GgufFile.open(damaged)) {
            assertThat(f.tensors().get("output.weight").type()).isEqualTo(GgmlType.I32);
            assertThatThrownBy(() -> f.tensor("output.weight"))
                    .isExactlyInstanceOf(ModelFormatException.class)
                    .hasMessageContaining("tensor 'output.weight': has type I32, which KVServe has no kernels for");
            assertThat(f.tensor("token_embd.weight").type()).isEqualTo(GgmlType.F32);
        }
        // Q4_K wants 256-wide blocks; a 64-wide row cannot be one
        assertThat(openExpectingFailure(withInt(stories, typeField, GgmlType.Q4_K.id)))
                .hasMessageContaining("row length 64 is not a multiple of Q4_K's block size 256");
    }

    @Test
    void badDimensions() throws Exception {
        long info = infoOffset("output.weight");
        long nDimsField = info + 8 + "output.weight".length();
        assertThat(openExpectingFailure(withInt(stories, nDimsField, 7)))
                .hasMessageContaining("tensor 'output.weight': has 7 dimensions; GGUF allows 1 to 4");
        assertThat(openExpectingFailure(withInt(stories, nDimsField, 0))).hasMessageContaining("has 0 dimensions");
        assertThat(openExpectingFailure(withLong(stories, nDimsField + 4, -1L))).hasMessageContaining("beyond 2^63");
        assertThat(openExpectingFailure(withLong(stories, nDimsField + 4 + 8, 1L << 62)))
                .hasMessageContaining("tensor 'output.weight'");
    }

    @Test
    void badAlignment() throws Exception {
        Path file = dir.resolve("aligned.gguf");
        try (GgufWriter w = new GgufWriter(file)) {
            w.putUInt32("general.alignment", 64);
        }
        byte[] b = Files.readAllBytes(file);
        int at = indexOf(b, "general.alignment".getBytes(StandardCharsets.UTF_8)) + 17 + 4;
        assertThat(openExpectingFailure(withInt(b, at, 48))).hasMessageContaining("general.alignment = 48 is not a power of two");
        assertThat(openExpectingFailure(withInt(b, at, 0))).hasMessageContaining("general.alignment = 0");
    }

    @Test
    void directoriesAndEmptyFilesAreNotGguf() throws Exception {
        assertThat(openExpectingFailure(new byte[0])).hasMessageContaining("truncated: 0 bytes");
        assertThatThrownBy(() -> GgufFile.open(dir)).isExactlyInstanceOf(ModelFormatException.class).hasMessageContaining("is a directory");
        // not a format problem: the file is not there at all
        Path missing = dir.resolve("missing.gguf");
        assertThatThrownBy(() -> dev.kvserve.runtime.ModelFile.open(missing))
                .isExactlyInstanceOf(java.nio.file.NoSuchFileException.class).hasMessageContaining("missing.gguf");
    }

    /** Random damage to the header either still parses to in-bounds tensors or is reported; nothing else. */
    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3})
    void randomHeaderDamageIsReportedOrHarmless(long seed) throws Exception {
        byte[] full = Files.readAllBytes(smallFile());
        int headerEnd;
        try (GgufFile f = GgufFile.open(dir.resolve("small.gguf"))) {
            headerEnd = (int) f.dataOffset();
        }
        SplittableRandom random = new SplittableRandom(seed);
        int reported = 0;
        for (int trial = 0; trial < 150; trial++) {
            byte[] b = full.clone();
            int flips = 1 + random.nextInt(4);
            for (int i = 0; i < flips; i++) {
                int at = random.nextInt(headerEnd);
                b[at] = random.nextBoolean() ? (byte) random.nextInt(256) : (byte) (b[at] ^ (1 << random.nextInt(8)));
            }
            Files.write(damaged, b);
            try (GgufFile f = GgufFile.open(damaged)) {
                for (WeightTensor t : f.tensors().values()) {
                    if (t.data().byteSize() > 0) t.data().get(ValueLayout.JAVA_BYTE, t.data().byteSize() - 1);
                }
            } catch (ModelFormatException expected) {
                reported++;
            }
        }
        assertThat(reported).as("most random damage is detectable").isGreaterThan(50);
    }

    // ---- helpers ----

    /** File offset of the name-length field of {@code name}'s tensor info. */
    long infoOffset(String name) {
        byte[] withLength = ByteBuffer.allocate(8 + name.length()).order(ByteOrder.LITTLE_ENDIAN)
                .putLong(name.length()).put(name.getBytes(StandardCharsets.UTF_8)).array();
        int at = indexOf(stories, withLength);
        assertThat(at).as(name).isPositive();
        return at;
    }

    static int indexOf(byte[] haystack, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= haystack.length; i++) {
            for (int j = 0; j < needle.length; j++) if (haystack[i + j] != needle[j]) continue outer;
            return i;
        }
        return -1;
    }

    static byte[] withInt(byte[] b, long at, int value) {
        byte[] copy = b.clone();
        ByteBuffer.wrap(copy).order(ByteOrder.LITTLE_ENDIAN).putInt((int) at, value);
        return copy;
    }

    static byte[] withLong(byte[] b, long at, long value) {
        byte[] copy = b.clone();
        ByteBuffer.wrap(copy).order(ByteOrder.LITTLE_ENDIAN).putLong((int) at, value);
        return copy;
    }

    static long readLong(byte[] b, long at) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong((int) at);
    }

    static int readInt(byte[] b, long at) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getInt((int) at);
    }
}
