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
    @CsvSource({"F32, 0", "F16, 0.0005", "BF16, 0.004", "Q8_0, 0.01", "Q4_0, 0.12", "Q4_K, 0.1", "Q6_K, 0.025"})
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
        for (GgmlType type : new GgmlType[] {GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K}) {
            float[] x = new float[256];
            MemorySegment q = MemorySegment.ofArray(new byte[(int) type.bytesFor(256)]);
            GgmlQuantize.quantizeRow(type, x, q, 0);
            float[] y = new float[256];
            GgmlQuantize.dequantizeRow(type, q, 0, y);
            for (float v : y) assertThat(Math.abs(v)).as(type.name()).isEqualTo(0f);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"Q4_1", "Q5_K", "IQ2_XS"})
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
}
