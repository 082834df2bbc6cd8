package dev.kvserve.kvcache.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.kvcache.KvGeometry;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

class CalibrationFileTest {

    private static final KvGeometry GEO = Fixtures.geometry();
    private static final KvSamples SAMPLES = Fixtures.samples(GEO, 2, 64, 400, true);

    @TempDir
    Path dir;

    private static WeightTensor tensor(float seed) {
        MemorySegment data = Arena.ofAuto().allocate(16 * 4L * 4);
        for (int i = 0; i < 64; i++) data.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, seed + i);
        return new WeightTensor("blk.0.attn_k.weight", GgmlType.F32, new long[] {16, 4}, data);
    }

    private static ModelIdentity identity() {
        return ModelIdentity.of("llama", GEO, tensor(1));
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {"kvquant|bits=3,outliers=0.01", "cq|c=4,bits=2,rope=post,window=4", "aqua|bits=2,first=fp16,buffer=8"})
    void roundTripsEveryMethodExactly(String method, String params) throws Exception {
        Calibration cal = Calibrator.fit(method, params, SAMPLES, null);
        Path file = dir.resolve(method + ".kvq");
        CalibrationFile.write(file, identity(), cal);
        Calibration back = CalibrationFile.read(file, identity());
        assertThat(back.method()).isEqualTo(cal.method());
        assertThat(back.spec()).isEqualTo(cal.spec());
        assertThat(back.geometry()).isEqualTo(cal.geometry());
        assertThat(CalibrationFile.toBytes(identity(), back)).containsExactly(Files.readAllBytes(file));
        // The same codes and attention from both.
        float[][][] seq = Fixtures.sequence(GEO, 24, 5, true);
        CompressedKv a = Oracles.open(cal), b = Oracles.open(back);
        Fixtures.fill(a, seq, 24, 24);
        Fixtures.fill(b, seq, 24, 24);
        float[] q = Fixtures.randomQueries(GEO, 2, 1);
        float[] oa = new float[q.length], ob = new float[q.length];
        a.attend(2, q, 2, 22, oa);
        b.attend(2, q, 2, 22, ob);
        assertThat(ob).containsExactly(oa);
        assertThat(b.bytesHeld()).isEqualTo(a.bytesHeld());
    }

    @Test
    void refusesAnotherModelACorruptFileAndOtherFiles() throws Exception {
        Calibration cal = Calibrator.fit("kvquant", "bits=4", SAMPLES, null);
        Path file = dir.resolve("k.kvq");
        CalibrationFile.write(file, identity(), cal);

        ModelIdentity otherWeights = ModelIdentity.of("llama", GEO, tensor(2));
        assertThatThrownBy(() -> CalibrationFile.read(file, otherWeights))
                .hasMessageContaining("different model").hasMessageContaining("SHA-256 of blk.0.attn_k.weight");
        KvGeometry otherShape = Fixtures.geometry(3, 4, 4, 4);
        assertThatThrownBy(() -> CalibrationFile.read(file, ModelIdentity.of("llama", otherShape, tensor(1))))
                .hasMessageContaining("kv heads: file has 2, model has 4");

        byte[] bytes = Files.readAllBytes(file);
        bytes[bytes.length / 2] ^= 0x40;
        Path corrupt = dir.resolve("corrupt.kvq");
        Files.write(corrupt, bytes);
        assertThatThrownBy(() -> CalibrationFile.read(corrupt, identity())).hasMessageContaining("corrupt").hasMessageContaining("checksum");

        Path truncated = dir.resolve("short.kvq");
        Files.write(truncated, java.util.Arrays.copyOf(Files.readAllBytes(file), 40));
        assertThatThrownBy(() -> CalibrationFile.read(truncated, identity())).hasMessageContaining("truncated");
        Files.write(truncated, java.util.Arrays.copyOf(Files.readAllBytes(file), 100));
        assertThatThrownBy(() -> CalibrationFile.read(truncated, identity())).hasMessageContaining("checksum");

        Path other = dir.resolve("other.bin");
        Files.writeString(other, "GGUF and more bytes");
        assertThatThrownBy(() -> CalibrationFile.read(other, identity())).hasMessageContaining("not a KVServe calibration file");

        byte[] newer = Files.readAllBytes(file);
        newer[9] = 7;
        Path future = dir.resolve("future.kvq");
        Files.write(future, newer);
        assertThatThrownBy(() -> CalibrationFile.read(future, identity())).hasMessageContaining("format version 7");

        assertThatThrownBy(() -> CalibrationFile.read(dir.resolve("missing.kvq"), identity())).hasMessageContaining("does not exist");
        // The stored identity can be read without a model.
        assertThat(CalibrationFile.readAny(file).identity()).isEqualTo(identity());
    }
}
