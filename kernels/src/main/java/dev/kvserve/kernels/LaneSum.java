package dev.kvserve.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * The sum of a FloatVector's lanes in one fixed order: a tree of folds, each adding the upper half
 * of the lanes onto the lower half.
 *
 * <p>Why not {@code reduceLanes(ADD)}: it leaves the order of the additions to the implementation,
 * and C2's intrinsic adds in one order while the Java fallback that runs before C2 compiles a kernel
 * adds lane by lane. The same numbers then summed to different last bits before and after a kernel
 * was compiled, so two runs of one computation in one JVM could disagree (it showed as ~1e-7
 * differences between an offloaded and an all-primary fp32 cache). Shuffles and lane-wise adds give
 * the same bits compiled or not, and cost what the intrinsic does (one shuffle and one add a fold).
 */
public final class LaneSum {
    private LaneSum() {}

    private static final VectorSpecies<Float> P = FloatVector.SPECIES_PREFERRED;
    private static final int L = P.length();
    private static final VectorShuffle<Float> FOLD8 = fold(8);
    private static final VectorShuffle<Float> FOLD4 = fold(4);
    private static final VectorShuffle<Float> FOLD2 = fold(2);
    private static final VectorShuffle<Float> FOLD1 = fold(1);

    /** Lane i takes lane i ^ half (for lanes below half: lane i + half). */
    private static VectorShuffle<Float> fold(int half) {
        return half < L ? VectorShuffle.fromOp(P, i -> i ^ half) : null;
    }

    public static float sum(FloatVector v) {
        if (v.species() != P) return sequential(v);
        if (L > 8) v = v.add(v.rearrange(FOLD8));
        if (L > 4) v = v.add(v.rearrange(FOLD4));
        if (L > 2) v = v.add(v.rearrange(FOLD2));
        if (L > 1) v = v.add(v.rearrange(FOLD1));
        return v.lane(0);
    }

    private static float sequential(FloatVector v) {
        float s = v.lane(0);
        for (int i = 1; i < v.length(); i++) s += v.lane(i);
        return s;
    }
}
