package dev.kvserve.runtime.gguf;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.runtime.ModelFormatException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class GgufWriterTest {

    @TempDir
    Path dir;

    static byte[] randomBytes(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    @Test
    void everyValueTypeRoundTrips() throws Exception {
        Path file = dir.resolve("all.gguf");
        try (GgufWriter w = new GgufWriter(file)) {
            w.putUInt8("u8", 255).putInt8("i8", -128).putUInt16("u16", 65535).putInt16("i16", -32768)
                    .putUInt32("u32", 4294967295L).putInt32("i32", Integer.MIN_VALUE)
                    .putUInt64("u64", -1L).putInt64("i64", Long.MIN_VALUE)
                    .putFloat32("f32", 1.5e-6f).putFloat64("f64", Math.PI)
                    .putBool("yes", true).putBool("no", false)
                    .putString("s", "Grüße, ▁世界")
                    .putString("empty", "");
            w.putArray("a.u8", GgufValueType.UINT8, new byte[] {0, 1, (byte) 255});
            w.putArray("a.i8", GgufValueType.INT8, new byte[] {-1, 2});
            w.putArray("a.u16", GgufValueType.UINT16, new short[] {(short) 65535, 7});
            w.putArray("a.i16", GgufValueType.INT16, new short[] {-3});
            w.putArray("a.u32", GgufValueType.UINT32, new int[] {-1, 0});
            w.putArray("a.i32", GgufValueType.INT32, new int[] {1, -2, 3});
            w.putArray("a.u64", GgufValueType.UINT64, new long[] {Long.MIN_VALUE});
            w.putArray("a.i64", GgufValueType.INT64, new long[] {-5L, 6L});
            w.putArray("a.f32", GgufValueType.FLOAT32, new float[] {0.25f, Float.NaN, -0f});
            w.putArray("a.f64", GgufValueType.FLOAT64, new double[] {1e300});
            w.putArray("a.bool", GgufValueType.BOOL, new boolean[] {true, false, true});
            w.putArray("a.str", GgufValueType.STRING, new String[] {"a", "", "<0x0A>", "ü"});
            w.putArray("a.empty", GgufValueType.FLOAT32, new float[0]);
            w.putArray("a.nested", GgufValueType.ARRAY, new GgufArray[] {
                    new GgufArray(GgufValueType.INT32, new int[] {1, 2}),
                    new GgufArray(GgufValueType.STRING, new String[] {"x"}),
                    new GgufArray(GgufValueType.ARRAY, new GgufArray[] {new GgufArray(GgufValueType.BOOL, new boolean[] {true})})});
        }
        try (GgufFile f = GgufFile.open(file)) {
            assertThat(f.version()).isEqualTo(3);
            assertThat(f.tensors()).isEmpty();
            assertThat(f.metadata()).containsEntry("u8", 255L).containsEntry("i8", -128L).containsEntry("u16", 65535L)
                    .containsEntry("i16", -32768L).containsEntry("u32", 4294967295L).containsEntry("i32", (long) Integer.MIN_VALUE)
                    .containsEntry("u64", -1L).containsEntry("i64", Long.MIN_VALUE)
                    .containsEntry("f32", 1.5e-6f).containsEntry("f64", Math.PI)
                    .containsEntry("yes", true).containsEntry("no", false)
                    .containsEntry("s", "Grüße, ▁世界").containsEntry("empty", "");
            assertThat(f.valueType("u8")).isEqualTo(GgufValueType.UINT8);
            assertThat(f.valueType("i16")).isEqualTo(GgufValueType.INT16);
            assertThat(f.valueType("u64")).isEqualTo(GgufValueType.UINT64);
            assertThat(f.valueType("f64")).isEqualTo(GgufValueType.FLOAT64);
            assertThat(f.valueType("a.u8")).isEqualTo(GgufValueType.ARRAY);
            assertThat(f.arrayElementType("a.u8")).isEqualTo(GgufValueType.UINT8);
            assertThat(f.arrayElementType("a.u32")).isEqualTo(GgufValueType.UINT32);
            assertThat(f.arrayElementType("s")).isNull();

            assertThat((byte[]) f.metadata().get("a.u8")).containsExactly(0, 1, 255);
            assertThat((byte[]) f.metadata().get("a.i8")).containsExactly(-1, 2);
            assertThat((short[]) f.metadata().get("a.u16")).containsExactly((short) 65535, (short) 7);
            assertThat((short[]) f.metadata().get("a.i16")).containsExactly((short) -3);
            assertThat((int[]) f.metadata().get("a.u32")).containsExactly(-1, 0);
            assertThat(f.getIntArray("a.i32")).containsExactly(1, -2, 3);
            assertThat(f.getIntArray("a.i16")).containsExactly(-3);
            assertThat(f.getIntArray("a.i64")).containsExactly(-5, 6);
            assertThat((long[]) f.metadata().get("a.u64")).containsExactly(Long.MIN_VALUE);
            float[] floats = f.getFloatArray("a.f32");
            assertThat(floats[0]).isEqualTo(0.25f);
            assertThat(floats[1]).isNaN();
            assertThat(Float.floatToRawIntBits(floats[2])).isEqualTo(Float.floatToRawIntBits(-0f));
            assertThat((double[]) f.metadata().get("a.f64")).containsExactly(1e300);
            assertThat(f.getFloatArray("a.f64")).containsExactly(Float.POSITIVE_INFINITY);
            assertThat((boolean[]) f.metadata().get("a.bool")).containsExactly(true, false, true);
            assertThat(f.getStringArray("a.str")).containsExactly("a", "", "<0x0A>", "ü");
            assertThat(f.getFloatArray("a.empty")).isEmpty();

            List<?> nested = (List<?>) f.metadata().get("a.nested");
            assertThat(nested).hasSize(3);
            assertThat((int[]) nested.get(0)).containsExactly(1, 2);
            assertThat((String[]) nested.get(1)).containsExactly("x");
            assertThat((boolean[]) ((List<?>) nested.get(2)).get(0)).containsExactly(true);
            assertThat(f.arrayElementType("a.nested")).isEqualTo(GgufValueType.ARRAY);
        }
    }

    @Test
    void tensorsRoundTripAlignedInOrder() throws Exception {
        Path file = dir.resolve("tensors.gguf");
        byte[] f32 = randomBytes(3 * 5 * 4, 1);
        byte[] f16 = randomBytes(7 * 2, 2);
        byte[] q8 = randomBytes(64 * 2 / 32 * 34, 3);
        byte[] i32 = randomBytes(2 * 3 * 4 * 5 * 4, 4);
        try (GgufWriter w = new GgufWriter(file)) {
            w.setAlignment(64);
            w.putString("general.architecture", "llama");
            w.addTensor("a.f32", GgmlType.F32, 5, 3);
            w.addTensor("b.f16", GgmlType.F16, 7);
            w.addTensor("c.q8", GgmlType.Q8_0, 64, 2);
            w.addTensor("d.empty", GgmlType.F32, 0, 4);
            w.addTensor("e.i32.4d", GgmlType.I32, 2, 3, 4, 5);
            assertThat(w.tensorBytes("c.q8")).isEqualTo(q8.length);
            // in pieces, as a streaming caller would
            w.appendTensorData("a.f32", MemorySegment.ofArray(f32).asSlice(0, 7));
            w.appendTensorData("a.f32", MemorySegment.ofArray(f32).asSlice(7));
            w.writeTensor("b.f16", MemorySegment.ofArray(f16));
            w.writeTensor("c.q8", MemorySegment.ofArray(q8));
            // a float[]-backed heap segment has no ByteBuffer view; the writer must still take it
            float[] asFloats = new float[i32.length / 4];
            MemorySegment.copy(MemorySegment.ofArray(i32), 0, MemorySegment.ofArray(asFloats), 0, i32.length);
            w.writeTensor("e.i32.4d", MemorySegment.ofArray(asFloats));
        }
        try (GgufFile f = GgufFile.open(file)) {
            assertThat(f.alignment()).isEqualTo(64);
            assertThat(f.dataOffset() % 64).isZero();
            assertThat(f.metadata().get("general.alignment")).isEqualTo(64L);
            assertThat(f.valueType("general.alignment")).isEqualTo(GgufValueType.UINT32);
            assertThat(f.tensors().keySet()).containsExactly("a.f32", "b.f16", "c.q8", "d.empty", "e.i32.4d");
            for (GgufTensorInfo info : f.tensorInfos()) assertThat(info.offset() % 64).as(info.name()).isZero();
            assertThat(bytes(f.tensors().get("a.f32"))).isEqualTo(f32);
            assertThat(bytes(f.tensors().get("b.f16"))).isEqualTo(f16);
            assertThat(bytes(f.tensors().get("c.q8"))).isEqualTo(q8);
            assertThat(bytes(f.tensors().get("e.i32.4d"))).isEqualTo(i32);
            assertThat(f.tensors().get("d.empty").elements()).isZero();
            assertThat(f.tensors().get("a.f32").shape()).containsExactly(5, 3);
            assertThat(f.tensors().get("e.i32.4d").shape()).containsExactly(2, 3, 4, 5);
            assertThat(f.tensors().get("c.q8").type()).isEqualTo(GgmlType.Q8_0);
            // I32 has no kernels: it reads fine but is refused for compute, by name and type
            assertThatThrownBy(() -> f.tensor("e.i32.4d"))
                    .isExactlyInstanceOf(ModelFormatException.class)
                    .hasMessageContaining("tensors.gguf").hasMessageContaining("e.i32.4d").hasMessageContaining("has type I32");
            assertThatThrownBy(() -> f.optionalTensor("e.i32.4d")).isExactlyInstanceOf(ModelFormatException.class);
            assertThat(f.tensor("c.q8").type()).isEqualTo(GgmlType.Q8_0);
        }
        // gguf-py pads after the last tensor too
        assertThat(Files.size(file) % 64).isZero();
    }

    static byte[] bytes(WeightTensor t) {
        return t.data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }

    @Test
    void misuseIsRefusedWithAReason() throws Exception {
        try (GgufWriter w = new GgufWriter(dir.resolve("misuse.gguf"))) {
            assertThatThrownBy(() -> w.putUInt8("k", 256)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside");
            assertThatThrownBy(() -> w.putUInt32("k", -1)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> w.putArray("k", GgufValueType.FLOAT32, new int[1]))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("float[]");
            assertThatThrownBy(() -> w.put("k", GgufValueType.STRING, 3L)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> w.setAlignment(48)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> w.addTensor("q", GgmlType.Q8_0, 48, 2))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("block size 32");
            assertThatThrownBy(() -> w.addTensor("x".repeat(64), GgmlType.F32, 1)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> w.addTensor("five", GgmlType.F32, 1, 1, 1, 1, 1)).isInstanceOf(IllegalArgumentException.class);
            w.addTensor("first", GgmlType.F32, 4);
            w.addTensor("second", GgmlType.F32, 4);
            assertThatThrownBy(() -> w.addTensor("first", GgmlType.F32, 4)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> w.appendTensorData("second", MemorySegment.ofArray(new byte[16])))
                    .isInstanceOf(IllegalStateException.class).hasMessageContaining("expected data for 'first'");
            assertThatThrownBy(() -> w.appendTensorData("first", MemorySegment.ofArray(new byte[17])))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("overflow");
            w.appendTensorData("first", MemorySegment.ofArray(new byte[16]));
            assertThatThrownBy(() -> w.putString("late", "x")).isInstanceOf(IllegalStateException.class);
            // "second" never gets its bytes: closing must not pass that off as a complete file
            assertThatThrownBy(w::close).isInstanceOf(IllegalStateException.class).hasMessageContaining("'second' got 0 of its 16 bytes");
        }
    }

    @Test
    void copiesAGgufThroughReaderAndWriter() throws Exception {
        Path source = dev.kvserve.runtime.SharedModels.file("stories260K-q8_0.gguf");
        Path copy = dir.resolve("copy.gguf");
        try (GgufFile in = GgufFile.open(source); GgufWriter out = new GgufWriter(copy)) {
            for (String key : in.metadata().keySet()) {
                Object v = in.metadata().get(key);
                GgufValueType t = in.valueType(key);
                if (t == GgufValueType.ARRAY) out.putArray(key, in.arrayElementType(key), v);
                else out.put(key, t, v);
            }
            for (GgufTensorInfo info : in.tensorInfos()) out.addTensor(info.name(), info.type(), info.shape());
            for (GgufTensorInfo info : in.tensorInfos()) out.writeTensor(info.name(), in.tensors().get(info.name()).data());
        }
        // same header fields and layout, so the same bytes as llama.cpp's own writer produced
        assertThat(Files.mismatch(source, copy)).isEqualTo(-1);
    }
}
