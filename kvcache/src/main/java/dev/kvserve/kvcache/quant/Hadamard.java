package dev.kvserve.kvcache.quant;

/**
 * The fast Walsh–Hadamard transform, unnormalised ({@code H·H = n·I}), as AQUA-KV's HIGGS quantizer
 * uses it: an orthogonal rotation (up to the factor {@code sqrt(n)}) that spreads every input value over
 * all outputs, so that the rotated residual looks Gaussian and a fixed Gaussian-optimal grid fits it.
 */
public final class Hadamard {

    private Hadamard() {}

    public static boolean isPowerOfTwo(int n) {
        return n > 0 && (n & (n - 1)) == 0;
    }

    /** In place: {@code x[off..off+n) = H_n · x[off..off+n)}; n must be a power of two. */
    public static void transform(float[] x, int off, int n) {
        if (!isPowerOfTwo(n)) throw new IllegalArgumentException("Hadamard size must be a power of two, got " + n);
        for (int h = 1; h < n; h <<= 1) {
            for (int i = off; i < off + n; i += h << 1) {
                for (int j = i; j < i + h; j++) {
                    float a = x[j], b = x[j + h];
                    x[j] = a + b;
                    x[j + h] = a - b;
                }
            }
        }
    }
}
