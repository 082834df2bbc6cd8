package dev.kvserve.kernels;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

class GgmlQuantizeTest {

    /** stories260K-q8_0.gguf was written by llama-quantize from stories260K.gguf (F32). */
    @ParameterizedTest
    @CsvSource({
        "stories260K.gguf, stories260K-q8_0.gguf",
        "tinystories-656k/tinystories-656k-f32.gguf, tinystories-656k/tinystories-656k-q8_0.gguf"})
    void reEncodingTheF32ModelReproducesLlamaQuantizeByteForByte(String f32File, String quantFile) throws Exception {
        Path models = TestGguf.sharedModels();
        try (Arena arena = Arena.ofConfined()) {
            TestGguf source = new TestGguf(models.resolve(f32File), arena);
            TestGguf quantized = new TestGguf(models.resolve(quantFile), arena);
            int checked = 0;
            for (WeightTensor expected : quantized.tensors.values()) {
                if (expected.type() == GgmlType.F32) continue;
                WeightTensor f32 = source.tensor(expected.name());
                assertThat(f32.type()).isEqualTo(GgmlType.F32);
                float[] values = f32.data().toArray(ValueLayout.JAVA_FLOAT_UNALIGNED);
                MemorySegment ours = GgmlQuantize.quantize(expected.type(), values, expected.cols(), arena);
                long mismatch = ours.mismatch(expected.data());
                assertThat(mismatch).as("first differing byte of %s (%s)", expected.name(), expected.type()).isEqualTo(-1L);
                checked++;
            }
            assertThat(checked).isGreaterThan(5);
        }
    }

    @Test
    void q4_0PacksElementJInTheLowNibbleAndJPlus16InTheHighNibble() {
        float[] x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = j - 16; // largest magnitude is -16 → d = -16 / -8 = 2
        MemorySegment block = MemorySegment.ofArray(new byte[18]);
        GgmlQuantize.quantizeRow(GgmlType.Q4_0, x, block, 0);
        assertThat(block.get(GgmlQuantize.LE_SHORT, 0)).isEqualTo((short) 0x4000); // 2.0 in f16
        // q = min(15, trunc(x/2 + 8.5)): element 0 → 0, element 16 → 8, element 15 → 8, element 31 → 15
        assertThat(block.get(ValueLayout.JAVA_BYTE, 2) & 0xff).isEqualTo(0x80);
        assertThat(block.get(ValueLayout.JAVA_BYTE, 2 + 15) & 0xff).isEqualTo(0xF8);
        float[] back = new float[32];
        GgmlQuantize.dequantizeRow(GgmlType.Q4_0, block, 0, back);
        assertThat(back[0]).isEqualTo(-16f);
        assertThat(back[16]).isEqualTo(0f);
        assertThat(back[31]).isEqualTo(14f);
    }

    @Test
    void q8_0RoundsHalvesAwayFromZeroLikeRoundf() {
        float[] x = new float[32];
        x[0] = 127f; // d = 1, so quants are roundf(x)
        x[1] = -2.5f;
        x[2] = 2.5f;
        x[3] = -0.5f;
        x[4] = 0.49999997f;
        MemorySegment block = MemorySegment.ofArray(new byte[34]);
        GgmlQuantize.quantizeRow(GgmlType.Q8_0, x, block, 0);
        assertThat(block.get(ValueLayout.JAVA_BYTE, 2 + 1)).isEqualTo((byte) -3);
        assertThat(block.get(ValueLayout.JAVA_BYTE, 2 + 2)).isEqualTo((byte) 3);
        assertThat(block.get(ValueLayout.JAVA_BYTE, 2 + 3)).isEqualTo((byte) -1);
        assertThat(block.get(ValueLayout.JAVA_BYTE, 2 + 4)).isEqualTo((byte) 0);
    }

    @Test
    void q4_KDecodesPackedSixBitScalesAndMins() {
        // Hand-built super-block: d = 1, dmin = 0.5; sub-block j gets scale j+1 and min 2j+1 (all
        // fit 6 bits, and sub-blocks 4..7 exercise the split high bits); every nibble is 3.
        MemorySegment block = MemorySegment.ofArray(new byte[144]);
        block.set(GgmlQuantize.LE_SHORT, 0, GgmlQuantize.floatToF16(1f));
        block.set(GgmlQuantize.LE_SHORT, 2, GgmlQuantize.floatToF16(0.5f));
        int[] sc = {1, 2, 3, 4, 45, 50, 60, 63};
        int[] mn = {1, 3, 5, 7, 33, 40, 17, 62};
        byte[] s = new byte[12];
        for (int j = 0; j < 4; j++) {
            s[j] = (byte) sc[j];
            s[j + 4] = (byte) mn[j];
        }
        for (int j = 4; j < 8; j++) {
            s[j + 4] = (byte) ((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
            s[j - 4] |= (byte) ((sc[j] >> 4) << 6);
            s[j] |= (byte) ((mn[j] >> 4) << 6);
        }
        MemorySegment.copy(s, 0, block, ValueLayout.JAVA_BYTE, 4, 12);
        for (int i = 0; i < 128; i++) block.set(ValueLayout.JAVA_BYTE, 16 + i, (byte) 0x53); // low 3, high 5
        for (int j = 0; j < 8; j++) {
            int sm = GgmlQuantize.scaleMinK4(block, 4, j);
            assertThat(sm & 0xff).isEqualTo(sc[j]);
            assertThat(sm >>> 8).isEqualTo(mn[j]);
        }
        float[] y = new float[256];
        GgmlQuantize.dequantizeRow(GgmlType.Q4_K, block, 0, y);
        for (int j = 0; j < 8; j++) {
            int q = j % 2 == 0 ? 3 : 5; // even sub-blocks are low nibbles
            assertThat(y[32 * j]).isEqualTo(sc[j] * q - 0.5f * mn[j]);
            assertThat(y[32 * j + 31]).isEqualTo(sc[j] * q - 0.5f * mn[j]);
        }
    }

    @Test
    void q6_KDecodesSplitLowAndHighBits() {
        MemorySegment block = MemorySegment.ofArray(new byte[210]);
        block.set(GgmlQuantize.LE_SHORT, 208, GgmlQuantize.floatToF16(0.25f));
        for (int k = 0; k < 16; k++) block.set(ValueLayout.JAVA_BYTE, 192 + k, (byte) (k - 8));
        // Element e of half h, e = 32*quarter + l: low nibble from ql[64h + l + 32*(quarter&1)] (low
        // nibble for quarters 0,1, high for 2,3), high two bits from qh[32h + l] at bits 2*quarter.
        int[] q = new int[256];
        Random rnd = new Random(7);
        for (int i = 0; i < 256; i++) q[i] = rnd.nextInt(64);
        for (int h = 0; h < 2; h++) {
            for (int l = 0; l < 32; l++) {
                int[] e = {128 * h + l, 128 * h + l + 32, 128 * h + l + 64, 128 * h + l + 96};
                block.set(ValueLayout.JAVA_BYTE, 64 * h + l, (byte) ((q[e[0]] & 0xF) | ((q[e[2]] & 0xF) << 4)));
                block.set(ValueLayout.JAVA_BYTE, 64 * h + l + 32, (byte) ((q[e[1]] & 0xF) | ((q[e[3]] & 0xF) << 4)));
                int hi = 0;
                for (int quarter = 0; quarter < 4; quarter++) hi |= (q[e[quarter]] >> 4) << (2 * quarter);
                block.set(ValueLayout.JAVA_BYTE, 128 + 32 * h + l, (byte) hi);
            }
        }
        float[] y = new float[256];
        GgmlQuantize.dequantizeRow(GgmlType.Q6_K, block, 0, y);
        for (int i = 0; i < 256; i++) {
            assertThat(y[i]).as("element %d", i).isEqualTo(0.25f * ((i / 16) - 8) * (q[i] - 32));
        }
    }

    @Test
    void bf16RoundsToNearestEvenAndKeepsNaNQuiet() {
        assertThat(GgmlQuantize.floatToBf16(1f)).isEqualTo((short) 0x3F80);
        assertThat(GgmlQuantize.floatToBf16(Float.intBitsToFloat(0x3F808000))).isEqualTo((short) 0x3F80); // tie → even
        assertThat(GgmlQuantize.floatToBf16(Float.intBitsToFloat(0x3F818000))).isEqualTo((short) 0x3F82); // tie → even
        assertThat(GgmlQuantize.floatToBf16(Float.intBitsToFloat(0x3F808001))).isEqualTo((short) 0x3F81);
        assertThat(GgmlQuantize.floatToBf16(Float.intBitsToFloat(0x7F800001)) & 0xffff).isEqualTo(0x7FC0);
        assertThat(GgmlQuantize.bf16ToFloat((short) 0xC040)).isEqualTo(-3f);
    }

    @Test
    void f16RoundsToNearestEven() {
        assertThat(GgmlQuantize.floatToF16(1f + 0x1p-11f)).isEqualTo((short) 0x3C00); // tie → even
        assertThat(GgmlQuantize.floatToF16(1f + 3 * 0x1p-11f)).isEqualTo((short) 0x3C02);
        assertThat(GgmlQuantize.f16ToFloat((short) 0xC000)).isEqualTo(-2f);
    }

    /** Error bounds of each encoder on Gaussian rows, relative to the row's RMS. */
    @ParameterizedTest
    @CsvSource({"F32, 0", "F16, 0.0005", "BF16, 0.004", "Q8_0, 0.01", "Q4_0, 0.12", "Q4_K, 0.1", "Q6_K, 0.025",
        "Q4_1, 0.11", "Q5_0, 0.06", "Q5_1, 0.055", "IQ4_NL, 0.1", "Q2_K, 0.4", "Q3_K, 0.2", "Q5_K, 0.05"})
    void roundTripErrorIsWithinTheTypesPrecision(GgmlType type, double maxRelRms) {
        int cols = 512;
        float[] x = new float[cols * 4];
        Random rnd = new Random(42);
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian() * 0.02f;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment q = GgmlQuantize.quantize(type, x, cols, arena);
            assertThat(q.byteSize()).isEqualTo(type.bytesFor(x.length));
            float[] y = new float[x.length];
            for (int r = 0; r < 4; r++) GgmlQuantize.dequantizeRow(type, q, r * type.bytesFor(cols), y, r * cols, cols);
            double err = 0;
            double ref = 0;
            for (int i = 0; i < x.length; i++) {
                err += (x[i] - y[i]) * (double) (x[i] - y[i]);
                ref += x[i] * (double) x[i];
            }
            assertThat(Math.sqrt(err / ref)).isLessThanOrEqualTo(maxRelRms);
            if (type == GgmlType.Q4_1 || type == GgmlType.Q5_1) {
                // min + q·d with q rounded half up and nothing clipped: within half a step, plus the
                // f16 rounding of d (times up to 31 steps) and of the min
                int steps = type == GgmlType.Q4_1 ? 15 : 31;
                for (int b = 0; b < x.length / 32; b++) {
                    long o = (long) b * type.blockBytes;
                    float d = GgmlQuantize.f16ToFloat(q.get(GgmlQuantize.LE_SHORT, o));
                    for (int j = 0; j < 32; j++) {
                        int i = 32 * b + j;
                        assertThat(Math.abs(x[i] - y[i])).isLessThanOrEqualTo(d * 0.5f + d * steps * 0x1p-11f + 0.001f * Math.abs(x[i]) + 1e-6f);
                    }
                }
            }
            if (type == GgmlType.Q8_0 || type == GgmlType.Q4_0) {
                // every value lands within half a step (plus f16 rounding of the scale) of its input;
                // Q4_0 clips the far end of its asymmetric range (-8..7) by up to a whole step
                float halfSteps = type == GgmlType.Q8_0 ? 0.5f : 1f;
                for (int b = 0; b < x.length / 32; b++) {
                    float d = Math.abs(GgmlQuantize.f16ToFloat(q.get(GgmlQuantize.LE_SHORT, (long) b * type.blockBytes)));
                    for (int j = 0; j < 32; j++) {
                        int i = 32 * b + j;
                        assertThat(Math.abs(x[i] - y[i])).isLessThanOrEqualTo(d * halfSteps * 1.002f + 0.002f * Math.abs(x[i]));
                    }
                }
            }
        }
    }

    @Test
    void zeroBlocksEncodeToZero() {
        for (GgmlType type : new GgmlType[] {GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q4_1,
                GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q5_K}) {
            float[] x = new float[256];
            MemorySegment q = MemorySegment.ofArray(new byte[(int) type.bytesFor(256)]);
            GgmlQuantize.quantizeRow(type, x, q, 0);
            float[] y = new float[256];
            GgmlQuantize.dequantizeRow(type, q, 0, y);
            for (float v : y) assertThat(Math.abs(v)).as(type.name()).isEqualTo(0f);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"Q8_1", "IQ4_XS", "IQ2_XS"})
    void unsupportedTypesAreRefusedByName(GgmlType type) {
        assertThatThrownBy(() -> GgmlQuantize.quantizeRow(type, new float[256], MemorySegment.ofArray(new byte[1024]), 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining(type.name());
    }

    @Test
    void badShapesAndBoundsAreRefused() {
        assertThatThrownBy(() -> GgmlQuantize.quantizeRow(GgmlType.Q8_0, new float[33], MemorySegment.ofArray(new byte[68]), 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("33");
        assertThatThrownBy(() -> GgmlQuantize.quantizeRow(GgmlType.Q8_0, new float[32], MemorySegment.ofArray(new byte[33]), 0))
                .isInstanceOf(IndexOutOfBoundsException.class);
        assertThatThrownBy(() -> GgmlQuantize.dequantizeRow(GgmlType.Q4_K, MemorySegment.ofArray(new byte[144]), 1, new float[256]))
                .isInstanceOf(IndexOutOfBoundsException.class);
    }

    // ---------------------------------------------------------------- ggml's own output

    /**
     * Every block-quantized encoder against ggml's: {@code src/test/resources/ggml-golden/*.bin}
     * are what ggml-quants.c (the llama.cpp source in /work/shared/peers) writes for the matrix
     * {@link #goldenInput} makes, through the functions {@code llama-quantize} calls without an
     * importance matrix (quantize_q5_0 → quantize_row_q5_0_ref, ..., quantize_iq4_nl). Made by
     * {@code golden.c} in the same folder, built with {@code -ffp-contract=off}; a build that
     * contracts to FMA writes the same bytes for every type but Q4_K here (32 bytes differ).
     */
    @ParameterizedTest
    @ValueSource(strings = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"})
    void encodersReproduceGgmlByteForByte(GgmlType type) throws Exception {
        byte[] expected;
        try (var in = GgmlQuantizeTest.class.getResourceAsStream("/ggml-golden/" + type.name().toLowerCase() + ".bin")) {
            assertThat(in).as("golden file for " + type).isNotNull();
            expected = in.readAllBytes();
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ours = GgmlQuantize.quantize(type, goldenInput(), GOLDEN_COLS, arena);
            assertThat(ours.byteSize()).isEqualTo(expected.length);
            long mismatch = ours.mismatch(MemorySegment.ofArray(expected));
            assertThat(mismatch).as("first differing byte (block %d)", mismatch / type.blockBytes).isEqualTo(-1L);
        }
    }

    private static final int GOLDEN_COLS = 512;
    private static long goldenState;

    /** golden.c's next_uniform: a 24-bit integer over 2^23, exact in float. */
    private static float nextUniform() {
        goldenState = goldenState * 6364136223846793005L + 1442695040888963407L;
        int v = (int) (goldenState >>> 40) - (1 << 23);
        return (float) v / 8388608.0f;
    }

    /** golden.c's fill(): four rows of 512 (uniform, small, cubed, and edge cases). */
    private static float[] goldenInput() {
        goldenState = 0x9E3779B97F4A7C15L;
        int n = GOLDEN_COLS;
        float[] x = new float[4 * n];
        for (int i = 0; i < n; i++) x[i] = nextUniform();
        for (int i = 0; i < n; i++) x[n + i] = nextUniform() * 0.02f;
        for (int i = 0; i < n; i++) {
            float u = nextUniform();
            x[2 * n + i] = u * u * u * 3.0f;
        }
        int r = 3 * n;
        for (int i = 0; i < n; i++) x[r + i] = nextUniform() * 0.05f;
        for (int i = 0; i < 32; i++) x[r + i] = 0.0f;
        for (int i = 32; i < 64; i++) x[r + i] = 0.5f;
        for (int i = 64; i < 96; i++) x[r + i] = x[r + i] < 0 ? -x[r + i] + 0.01f : x[r + i] + 0.01f;
        x[r + 96 + 5] = 4.0f;
        x[r + 128 + 7] = -3.0f;
        for (int i = 256; i < 272; i++) x[r + i] = 0.0f;
        return x;
    }

    // ---------------------------------------------------------------- hand-checked blocks

    @Test
    void q5_0PutsTheFifthBitsInQhAndMapsTheLargestMagnitudeOntoMinus16() {
        float[] x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = j - 16;   // largest magnitude -16 → d = -16 / -16 = 1
        MemorySegment block = MemorySegment.ofArray(new byte[22]);
        GgmlQuantize.quantizeRow(GgmlType.Q5_0, x, block, 0);
        assertThat(block.get(GgmlQuantize.LE_SHORT, 0)).isEqualTo((short) 0x3C00);   // 1.0
        // q = min(31, trunc(x + 16.5)) = j: bit 4 is set for j = 16..31, so qh = 0xFFFF0000
        assertThat(block.get(GgmlQuantize.LE_INT, 2)).isEqualTo(0xFFFF0000);
        // byte j: low nibble j & 15 (element j), high nibble (j + 16) & 15 = j
        for (int j = 0; j < 16; j++) assertThat(block.get(ValueLayout.JAVA_BYTE, 6 + j) & 0xff).isEqualTo(j | (j << 4));
        float[] back = new float[32];
        GgmlQuantize.dequantizeRow(GgmlType.Q5_0, block, 0, back);
        assertThat(back).containsExactly(x);
    }

    @Test
    void q4_1AndQ5_1StoreTheMinimumAndUnsignedSteps() {
        float[] x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = 3 + (j % 16);   // min 3, max 18: Q4_1 d = 1, Q5_1 d = 15/31
        MemorySegment q41 = MemorySegment.ofArray(new byte[20]);
        GgmlQuantize.quantizeRow(GgmlType.Q4_1, x, q41, 0);
        assertThat(GgmlQuantize.f16ToFloat(q41.get(GgmlQuantize.LE_SHORT, 0))).isEqualTo(1f);
        assertThat(GgmlQuantize.f16ToFloat(q41.get(GgmlQuantize.LE_SHORT, 2))).isEqualTo(3f);
        for (int j = 0; j < 16; j++) assertThat(q41.get(ValueLayout.JAVA_BYTE, 4 + j) & 0xff).isEqualTo(j | (j << 4));
        float[] back = new float[32];
        GgmlQuantize.dequantizeRow(GgmlType.Q4_1, q41, 0, back);
        assertThat(back).containsExactly(x);

        MemorySegment q51 = MemorySegment.ofArray(new byte[24]);
        GgmlQuantize.quantizeRow(GgmlType.Q5_1, x, q51, 0);
        assertThat(GgmlQuantize.f16ToFloat(q51.get(GgmlQuantize.LE_SHORT, 2))).isEqualTo(3f);
        GgmlQuantize.dequantizeRow(GgmlType.Q5_1, q51, 0, back);
        // the top value uses q = 31: its fifth bit is set for elements 15 and 31
        assertThat(q51.get(GgmlQuantize.LE_INT, 4) & 0x80008000).isEqualTo(0x80008000);
        for (int j = 0; j < 32; j++) assertThat(back[j]).isCloseTo(x[j], org.assertj.core.data.Offset.offset(0.25f));
    }

    @Test
    void iq4_NlPicksTheNearestOfItsSixteenLevels() {
        // A block that is exactly d · level for d = 0.01: the fit finds that scale and the levels.
        int[] levels = GgmlQuantize.IQ4_NL_VALUES;
        float[] x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = levels[(j * 7) % 16] * 0.01f;
        MemorySegment block = MemorySegment.ofArray(new byte[18]);
        GgmlQuantize.quantizeRow(GgmlType.IQ4_NL, x, block, 0);
        for (int j = 0; j < 16; j++) {
            int b = block.get(ValueLayout.JAVA_BYTE, 2 + j) & 0xff;
            assertThat(b & 15).as("element %d", j).isEqualTo((j * 7) % 16);
            assertThat(b >>> 4).as("element %d", j + 16).isEqualTo(((j + 16) * 7) % 16);
        }
        float[] back = new float[32];
        GgmlQuantize.dequantizeRow(GgmlType.IQ4_NL, block, 0, back);
        for (int j = 0; j < 32; j++) assertThat(back[j]).isCloseTo(x[j], org.assertj.core.data.Offset.offset(0.0013f));
    }

    @Test
    void q2_KQ3_KAndQ5_KDecodeTheirPackedFields() {
        // Q2_K: scale byte 0x21 (scale 1, min 2) for run 0, d = 1, dmin = 0.5; element 32 (g = 1,
        // run 2) reads bits 2-3 of quant byte 0.
        MemorySegment q2 = MemorySegment.ofArray(new byte[84]);
        q2.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x21);
        q2.set(ValueLayout.JAVA_BYTE, 2, (byte) 0x03);
        q2.set(ValueLayout.JAVA_BYTE, 16, (byte) 0b1110);   // element 0 → 2, element 32 → 3
        q2.set(GgmlQuantize.LE_SHORT, 80, GgmlQuantize.floatToF16(1f));
        q2.set(GgmlQuantize.LE_SHORT, 82, GgmlQuantize.floatToF16(0.5f));
        float[] y = new float[256];
        GgmlQuantize.dequantizeRow(GgmlType.Q2_K, q2, 0, y);
        assertThat(y[0]).isEqualTo(1f * 2 - 0.5f * 2);
        assertThat(y[32]).isEqualTo(3f * 3);
        assertThat(y[1]).isEqualTo(-1f);

        // Q3_K: run 9's scale = low nibble in the high half of byte 1, top bits at bits 4-5 of
        // byte 8 + 9 % 4 = 9; element 144 (h = 1, g = 0, l = 16) has hmask bit 4 of hmask[16].
        MemorySegment q3 = MemorySegment.ofArray(new byte[110]);
        q3.set(ValueLayout.JAVA_BYTE, 96 + 1, (byte) 0x50);          // run 9 low nibble 5
        q3.set(ValueLayout.JAVA_BYTE, 96 + 9, (byte) (2 << 4));      // run 9 top bits 2 → 37 - 32 = 5
        q3.set(ValueLayout.JAVA_BYTE, 16, (byte) (1 << 4));          // third bit of element 144
        q3.set(ValueLayout.JAVA_BYTE, 32 + 32 + 16, (byte) 0b10);    // low bits of element 144: 2
        q3.set(GgmlQuantize.LE_SHORT, 108, GgmlQuantize.floatToF16(0.5f));
        assertThat(GgmlQuantize.scaleQ3K(q3, 96, 9)).isEqualTo(5);
        GgmlQuantize.dequantizeRow(GgmlType.Q3_K, q3, 0, y);
        assertThat(y[144]).isEqualTo(0.5f * 5 * 2);             // bit set: q = 2, no -4
        assertThat(y[145]).isEqualTo(0.5f * 5 * -4);            // bit clear, low bits 0: q = -4
        assertThat(y[0]).isEqualTo(0.5f * -32 * -4);            // scale 0 - 32

        // Q5_K: sub-block 3 (c = 1, high nibbles) takes its fifth bit from bit 3 of qh[l].
        MemorySegment q5 = MemorySegment.ofArray(new byte[176]);
        q5.set(GgmlQuantize.LE_SHORT, 0, GgmlQuantize.floatToF16(1f));
        q5.set(ValueLayout.JAVA_BYTE, 4 + 3, (byte) 2);              // sub-block 3 scale 2, min 0
        q5.set(ValueLayout.JAVA_BYTE, 16 + 4, (byte) (1 << 3));
        q5.set(ValueLayout.JAVA_BYTE, 48 + 32 + 4, (byte) 0x70);     // high nibble 7
        GgmlQuantize.dequantizeRow(GgmlType.Q5_K, q5, 0, y);
        assertThat(y[96 + 4]).isEqualTo(2f * (7 + 16));
        assertThat(y[96 + 5]).isEqualTo(0f);
    }
}
