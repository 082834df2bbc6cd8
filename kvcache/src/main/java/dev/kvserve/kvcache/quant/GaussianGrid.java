package dev.kvserve.kvcache.quant;

import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;

/**
 * An MSE-optimal vector quantization grid for the standard normal distribution in {@code dim}
 * dimensions with {@code size} points: the "EDEN"/HIGGS grids AQUA-KV quantizes rotated residuals on.
 *
 * <p>The reference ships pre-computed grids ({@code aquakv/grids/EDEN{d}-{n}.pt}) made by stochastic
 * Lloyd (CLVQ) on Gaussian samples. Here the same fixed point is reached with deterministic batch
 * Lloyd ({@link WeightedKMeans}) on a seeded Gaussian sample of {@code 64·size} points (at least 8192).
 * The grid is stored in the calibration file, so a serving process uses exactly the grid it was
 * calibrated with and never regenerates it.
 *
 * @param points row-major {@code size × dim}
 */
public record GaussianGrid(int dim, int size, float[] points) {

    private static final Map<String, GaussianGrid> CACHE = new ConcurrentHashMap<>();

    public GaussianGrid {
        if (dim < 1 || dim > 8) throw new IllegalArgumentException("grid dimension must be 1..8, got " + dim);
        if (!Hadamard.isPowerOfTwo(size) || size < 2 || size > 1 << 16) {
            throw new IllegalArgumentException("grid size must be a power of two in 2..65536, got " + size);
        }
        if (points.length != dim * size) {
            throw new IllegalArgumentException("grid holds " + points.length + " values, expected " + dim * size);
        }
        points = points.clone();
    }

    @Override
    public float[] points() {
        return points.clone();
    }

    /** Bits of one code: log2(size). */
    public int codeBits() {
        return Integer.numberOfTrailingZeros(size);
    }

    /** Index of the grid point nearest to {@code y[off..off+dim)}: argmax {@code 2 y·g − |g|²}. */
    public int nearest(float[] y, int off) {
        return WeightedKMeans.nearest(y, off, dim, points, size);
    }

    public float coordinate(int code, int d) {
        return points[code * dim + d];
    }

    /** The grid for (dim, size), generated once per process from a fixed seed. */
    public static GaussianGrid standard(int dim, int size) {
        return CACHE.computeIfAbsent(dim + "x" + size, key -> generate(dim, size, 0x5EEDL));
    }

    public static GaussianGrid generate(int dim, int size, long seed) {
        if ((long) dim * size > 4096) {
            throw new IllegalArgumentException("grid " + dim + "x" + size + " is too large to generate here (dim·size <= 4096)");
        }
        int samples = Math.max(8192, 64 * size);
        Random random = new Random(seed);
        float[] data = new float[samples * dim];
        for (int i = 0; i < data.length; i++) data[i] = (float) random.nextGaussian();
        WeightedKMeans.Result r = WeightedKMeans.fit(data, dim, null, size, 60, 1e-5, seed);
        return new GaussianGrid(dim, size, r.centroids());
    }
}
