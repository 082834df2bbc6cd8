package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.RopeConfig;
import java.util.Arrays;

/**
 * cos/sin of every (position, pair) of one {@link RopeConfig}, computed once with
 * {@link RopeConfig#theta} in double and kept as float. A decode step rotates q and k of every
 * layer at the same position, so recomputing the trigonometry per call would cost more than the
 * rotation. Positions are filled in pages of {@value #PAGE} as they are first used.
 */
final class RopeTable {
    private static final int PAGE = 256;

    private final RopeConfig rope;
    private final int half;
    /** pages[p][(pos % PAGE) * 2 * half + 2*i] = cos, +1 = sin. */
    private float[][] pages = new float[0][];

    RopeTable(RopeConfig rope) {
        this.rope = rope;
        this.half = rope.dims() / 2;
    }

    /** Whether this table was built for a config with the same values as {@code other}. */
    boolean matches(RopeConfig other) {
        return rope == other
                || rope.dims() == other.dims()
                && Float.compare(rope.freqBase(), other.freqBase()) == 0
                && Float.compare(rope.freqScale(), other.freqScale()) == 0
                && rope.neox() == other.neox()
                && Arrays.equals(rope.freqFactors(), other.freqFactors());
    }

    /** The page holding {@code position}; the entry of pair i is at {@link #offset} + 2i. */
    float[] page(int position) {
        int p = position / PAGE;
        if (p >= pages.length) pages = Arrays.copyOf(pages, Math.max(p + 1, pages.length * 2));
        float[] page = pages[p];
        if (page == null) {
            page = new float[PAGE * 2 * half];
            for (int k = 0; k < PAGE; k++) {
                int pos = p * PAGE + k;
                for (int i = 0; i < half; i++) {
                    double theta = rope.theta(pos, i);
                    page[k * 2 * half + 2 * i] = (float) Math.cos(theta);
                    page[k * 2 * half + 2 * i + 1] = (float) Math.sin(theta);
                }
            }
            pages[p] = page;
        }
        return page;
    }

    int offset(int position) {
        return (position % PAGE) * 2 * half;
    }
}
