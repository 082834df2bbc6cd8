package dev.kvserve.kernels.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

/** Host/device transfers of plain arrays for kernel tests. */
final class DeviceBuffers {

    private DeviceBuffers() {}

    static MemorySegment floats(CudaBackend b, float[] values) {
        MemorySegment d = b.allocate(4L * Math.max(values.length, 1));
        b.copyFromHost(MemorySegment.ofArray(values), d);
        return d;
    }

    static MemorySegment ints(CudaBackend b, int[] values) {
        MemorySegment d = b.allocate(4L * Math.max(values.length, 1));
        b.copyFromHost(MemorySegment.ofArray(values), d);
        return d;
    }

    static MemorySegment longs(CudaBackend b, long[] values) {
        MemorySegment d = b.allocate(8L * Math.max(values.length, 1));
        b.copyFromHost(MemorySegment.ofArray(values), d);
        return d;
    }

    static float[] readFloats(CudaBackend b, MemorySegment d, int n) {
        float[] out = new float[n];
        b.copyToHost(d, MemorySegment.ofArray(out));
        return out;
    }

    static int[] readInts(CudaBackend b, MemorySegment d, int n) {
        int[] out = new int[n];
        b.copyToHost(d, MemorySegment.ofArray(out));
        return out;
    }

    static long[] readLongs(CudaBackend b, MemorySegment d, int n) {
        long[] out = new long[n];
        b.copyToHost(d, MemorySegment.ofArray(out));
        return out;
    }

    static byte[] readBytes(CudaBackend b, MemorySegment d) {
        byte[] out = new byte[Math.toIntExact(d.byteSize())];
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(out.length);
            b.copyToHost(d, h);
            MemorySegment.copy(h, ValueLayout.JAVA_BYTE, 0, out, 0, out.length);
        }
        return out;
    }

    static float[] gaussian(Random rnd, int n, float scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) rnd.nextGaussian() * scale;
        return v;
    }
}
