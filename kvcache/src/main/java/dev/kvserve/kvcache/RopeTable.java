package dev.kvserve.kvcache;

import dev.kvserve.kernels.RopeConfig;

/**
 * Cosines and sines of the rotary embedding by position, computed once and grown on demand, so that
 * attention can rotate keys stored before RoPE and queries by a position offset without calling
 * {@code Math.cos} in its inner loops. Thread-safe; negative positions are computed directly.
 */
public final class RopeTable {

    private final RopeConfig rope;
    private final int headDim;
    private final int pairs;
    private volatile float[] cos = new float[0];
    private volatile float[] sin = new float[0];
    private volatile int positions;

    public RopeTable(RopeConfig rope, int headDim) {
        if (rope.dims() > headDim || rope.dims() % 2 != 0) {
            throw new IllegalArgumentException("RoPE dims " + rope.dims() + " must be even and <= head size " + headDim);
        }
        this.rope = rope;
        this.headDim = headDim;
        this.pairs = rope.dims() / 2;
    }

    public RopeConfig config() {
        return rope;
    }

    public int headDim() {
        return headDim;
    }

    private void ensure(int position) {
        if (position < positions) return;
        synchronized (this) {
            int have = positions;
            if (position < have) return;
            int n = Math.max(position + 1, Math.max(256, have * 2));
            float[] c = new float[n * pairs];
            float[] s = new float[n * pairs];
            System.arraycopy(cos, 0, c, 0, have * pairs);
            System.arraycopy(sin, 0, s, 0, have * pairs);
            for (int p = have; p < n; p++) {
                for (int i = 0; i < pairs; i++) {
                    double t = rope.theta(p, i);
                    c[p * pairs + i] = (float) Math.cos(t);
                    s[p * pairs + i] = (float) Math.sin(t);
                }
            }
            cos = c;
            sin = s;
            positions = n;
        }
    }

    /** Rotates one head vector x[off .. off+headDim) in place to {@code position} (may be negative). */
    public void rotate(float[] x, int off, int position) {
        float[] c;
        float[] s;
        int base;
        if (position >= 0) {
            ensure(position);
            c = cos;
            s = sin;
            base = position * pairs;
        } else {
            c = new float[pairs];
            s = new float[pairs];
            for (int i = 0; i < pairs; i++) {
                double t = rope.theta(position, i);
                c[i] = (float) Math.cos(t);
                s[i] = (float) Math.sin(t);
            }
            base = 0;
        }
        if (rope.neox()) {
            for (int i = 0; i < pairs; i++) {
                float a = x[off + i], b = x[off + i + pairs];
                float ci = c[base + i], si = s[base + i];
                x[off + i] = a * ci - b * si;
                x[off + i + pairs] = a * si + b * ci;
            }
        } else {
            for (int i = 0; i < pairs; i++) {
                float a = x[off + 2 * i], b = x[off + 2 * i + 1];
                float ci = c[base + i], si = s[base + i];
                x[off + 2 * i] = a * ci - b * si;
                x[off + 2 * i + 1] = a * si + b * ci;
            }
        }
    }
}
