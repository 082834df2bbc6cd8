package dev.kvserve.kernels;

import jdk.incubator.vector.FloatVector;

/**
 * The sum of a FloatVector's lanes in one fixed order, lane 0 first.
 *
 * <p>Why not {@code reduceLanes(ADD)}: it leaves the order of the additions to the implementation,
 * and C2's intrinsic adds in a tree while the interpreter and C1 add lane by lane. The same numbers
 * would then sum to different last bits before and after a kernel is compiled, so two runs of one
 * computation in one JVM could disagree (it showed as 1e-7..1e-5 differences between an offloaded and
 * an all-primary fp32 cache). With a fixed order every kernel is a pure function of its inputs. The
 * cost is one reduction per dot product, not per element.
 */
public final class LaneSum {
    private LaneSum() {}

    public static float sum(FloatVector v) {
        float s = v.lane(0);
        for (int i = 1; i < v.length(); i++) s += v.lane(i);
        return s;
    }
}
