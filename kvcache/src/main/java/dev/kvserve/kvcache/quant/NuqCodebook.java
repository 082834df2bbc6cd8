package dev.kvserve.kvcache.quant;

import java.util.Arrays;

/**
 * KVQuant's non-uniform datatype "nuqX": {@code 2^bits} signposts in normalised units (about [-1, 1]),
 * learned per layer by weighted k-means, plus the optional Q-Norm correction.
 *
 * <p>Encoding rounds a normalised value to the nearest <em>raw</em> signpost; decoding returns
 * {@code signpost * normScale + normOffset} (identity when Q-Norm is off), as the reference
 * {@code quant_fn_nuq_recon} does. Signposts are binary16 values, as the quantizer file stores them.
 *
 * @param signposts ascending, binary16-exact
 * @param normScale Q-Norm scale (1 without Q-Norm)
 * @param normOffset Q-Norm offset (0 without Q-Norm)
 */
public record NuqCodebook(float[] signposts, float normScale, float normOffset) {

    public NuqCodebook {
        signposts = signposts.clone();
        if (signposts.length < 2 || !Hadamard.isPowerOfTwo(signposts.length) || signposts.length > 1 << 8) {
            throw new IllegalArgumentException("a nuq codebook has 2^bits signposts (bits 1..8), got " + signposts.length);
        }
        for (int i = 0; i < signposts.length; i++) {
            if (!Float.isFinite(signposts[i])) throw new IllegalArgumentException("signpost " + i + " is not finite");
            if (i > 0 && signposts[i] < signposts[i - 1]) {
                throw new IllegalArgumentException("nuq signposts must be ascending");
            }
        }
        if (!Float.isFinite(normScale) || !Float.isFinite(normOffset)) {
            throw new IllegalArgumentException("Q-Norm scale/offset must be finite");
        }
    }

    /** A codebook without Q-Norm. */
    public static NuqCodebook of(float[] signposts) {
        return new NuqCodebook(signposts, 1f, 0f);
    }

    public int size() {
        return signposts.length;
    }

    public int bits() {
        return Integer.numberOfTrailingZeros(signposts.length);
    }

    public boolean qNorm() {
        return normScale != 1f || normOffset != 0f;
    }

    @Override
    public float[] signposts() {
        return signposts.clone();
    }

    /** Code of the signpost nearest to the normalised value {@code u}. */
    public int encode(float u) {
        return WeightedKMeans.nearestSorted(signposts, u);
    }

    /** Normalised value that code {@code code} stands for (Q-Norm applied). */
    public float decode(int code) {
        return signposts[code] * normScale + normOffset;
    }

    /** {@link #decode} of every code, for table lookups in attention. */
    public float[] decodeTable() {
        float[] t = new float[signposts.length];
        for (int i = 0; i < t.length; i++) t[i] = decode(i);
        return t;
    }

    /** The same signposts with a Q-Norm correction. */
    public NuqCodebook withQNorm(float scale, float offset) {
        return new NuqCodebook(signposts, scale, offset);
    }

    /** Bytes the paper's quantizer file needs for it: binary16 signposts (+ two floats for Q-Norm). */
    public long storedBytes() {
        return 2L * signposts.length + (qNorm() ? 8 : 0);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof NuqCodebook c && Arrays.equals(signposts, c.signposts)
                && Float.compare(normScale, c.normScale) == 0 && Float.compare(normOffset, c.normOffset) == 0;
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(signposts) * 31 + Float.hashCode(normScale) * 17 + Float.hashCode(normOffset);
    }

    @Override
    public String toString() {
        return "nuq" + bits() + Arrays.toString(signposts) + (qNorm() ? " qnorm(" + normScale + "," + normOffset + ")" : "");
    }
}
