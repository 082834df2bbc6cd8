package dev.kvserve.kvcache.quant;

import dev.kvserve.kernels.RopeConfig;

/**
 * Cosines and sines of every rotary pair at every position seen so far, for formats that keep keys
 * before RoPE and rotate on read (KVQuant, AQUA-KV, CQ with pre-RoPE keys). Angles come from
 * {@link RopeConfig#theta}, the formula every backend shares, so rotation here matches the decoder's.
 *
 * <p>Pair {@code i} of a head couples channels {@code (2i, 2i+1)} (GGUF/Meta layout) or
 * {@code (i, i + dims/2)} (rotate-half, {@code neox}); channels from {@code dims} on do not rotate.
 * The table only grows; a grown table is published as a new array, so readers never see a partial row.
 */
public final class RopeTable {

    private final RopeConfig rope;
    private final int headDim;
    private final int pairs;
    private volatile float[] cos = new float[0];
    private volatile float[] sin = new float[0];

    public RopeTable(RopeConfig rope, int headDim) {
        if (rope.dims() > headDim || rope.dims() % 2 != 0) {
            throw new IllegalArgumentException("RoPE rotates " + rope.dims() + " dims of a " + headDim + "-wide head");
        }
        this.rope = rope;
        this.headDim = headDim;
        this.pairs = rope.dims() / 2;
    }

    public RopeConfig rope() {
        return rope;
    }

    public int pairs() {
        return pairs;
    }

    /** First channel of pair i. */
    public int first(int i) {
        return rope.neox() ? i : 2 * i;
    }

    /** Second channel of pair i. */
    public int second(int i) {
        return rope.neox() ? i + pairs : 2 * i + 1;
    }

    private void ensure(int positions) {
        if (cos.length >= positions * pairs) return;
        synchronized (this) {
            int have = cos.length / Math.max(1, pairs);
            if (have >= positions) return;
            int want = Math.max(positions, Math.max(64, have * 2));
            float[] c = java.util.Arrays.copyOf(cos, want * pairs);
            float[] s = java.util.Arrays.copyOf(sin, want * pairs);
            for (int p = have; p < want; p++) {
                for (int i = 0; i < pairs; i++) {
                    double t = rope.theta(p, i);
                    c[p * pairs + i] = (float) Math.cos(t);
                    s[p * pairs + i] = (float) Math.sin(t);
                }
            }
            sin = s;
            cos = c;
        }
    }

    /** Rotates one head {@code x[off..off+headDim)} to position {@code pos} (inverse: rotates back). */
    public void rotate(float[] x, int off, int pos, boolean inverse) {
        ensure(pos + 1);
        float[] c = cos, s = sin;
        for (int i = 0; i < pairs; i++) {
            float cs = c[pos * pairs + i];
            float sn = inverse ? -s[pos * pairs + i] : s[pos * pairs + i];
            int a = off + first(i), b = off + second(i);
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * cs - x1 * sn;
            x[b] = x0 * sn + x1 * cs;
        }
    }

    /**
     * The vector {@code a = R(pos)ᵀ q} for one head, so that {@code q · R(pos) k = a · k} for any
     * pre-RoPE key k: attention can then read a key straight from its codes without rotating it.
     */
    public void queryCoefficients(float[] q, int qOff, int pos, float[] a) {
        ensure(pos + 1);
        float[] c = cos, s = sin;
        System.arraycopy(q, qOff, a, 0, headDim);
        for (int i = 0; i < pairs; i++) {
            float cs = c[pos * pairs + i];
            float sn = s[pos * pairs + i];
            int fa = first(i), fb = second(i);
            float q0 = q[qOff + fa], q1 = q[qOff + fb];
            a[fa] = q0 * cs + q1 * sn;
            a[fb] = q1 * cs - q0 * sn;
        }
    }

    /** Rotates each of the {@code heads} heads of a row to {@code pos}. */
    public void rotateRow(float[] x, int off, int heads, int pos, boolean inverse) {
        for (int h = 0; h < heads; h++) rotate(x, off + h * headDim, pos, inverse);
    }
}
