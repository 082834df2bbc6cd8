package dev.kvserve.kernels;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Random;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class LaneSumTest {

    /** The fold order written out in scalars: lane i gets lane i + half, halves shrinking to one. */
    static float foldInScalars(float[] lanes) {
        float[] v = lanes.clone();
        for (int half = v.length / 2; half >= 1; half /= 2) {
            for (int i = 0; i < half; i++) v[i] = v[i] + v[i + half];
        }
        return v[0];
    }

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 42, 1234})
    void sumsInTheDocumentedOrderBitForBit(long seed) {
        VectorSpecies<Float> species = FloatVector.SPECIES_PREFERRED;
        Random rnd = new Random(seed);
        float[] lanes = new float[species.length()];
        for (int round = 0; round < 200; round++) {
            // Mixed magnitudes, so that a different order would round differently.
            for (int i = 0; i < lanes.length; i++) lanes[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(9) - 4));
            float expected = foldInScalars(lanes);
            assertThat(Float.floatToRawIntBits(LaneSum.sum(FloatVector.fromArray(species, lanes, 0))))
                    .isEqualTo(Float.floatToRawIntBits(expected));
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {64, 128, 256})
    void otherShapesSumLaneByLane(int bits) {
        VectorSpecies<Float> species = VectorSpecies.of(float.class, VectorShape.forBitSize(bits));
        float[] lanes = new float[species.length()];
        for (int i = 0; i < lanes.length; i++) lanes[i] = 1f / (i + 3);
        float expected = species == FloatVector.SPECIES_PREFERRED ? foldInScalars(lanes) : sequential(lanes);
        assertThat(LaneSum.sum(FloatVector.fromArray(species, lanes, 0))).isEqualTo(expected);
    }

    private static float sequential(float[] lanes) {
        float s = lanes[0];
        for (int i = 1; i < lanes.length; i++) s += lanes[i];
        return s;
    }
}
