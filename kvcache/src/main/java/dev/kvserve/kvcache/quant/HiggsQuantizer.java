package dev.kvserve.kvcache.quant;

/**
 * AQUA-KV's residual quantizer (HIGGS, {@code aquakv/quantizers.py}) for vectors of {@code channels}
 * values: pad to a multiple of the Hadamard group, per group take the L2 norm {@code s}, rotate with the
 * unnormalised Walsh–Hadamard transform and divide by {@code s} (entries become roughly N(0,1)), round
 * each {@code dim}-value piece to the nearest point of a Gaussian grid. Decode multiplies the grid points
 * by {@code s} and applies {@code H/group} (H·H = group·I), then drops the padding.
 *
 * <p>Stored per vector: {@code log2(size)} bits per {@code dim} values and one binary16 norm per group.
 * Codes are ordered by position in the rotated vector: group by group, piece by piece.
 */
public final class HiggsQuantizer {

    private final GaussianGrid grid;
    private final int channels;
    private final int group;
    private final int groups;
    private final int codesPerGroup;

    public HiggsQuantizer(GaussianGrid grid, int channels, int group) {
        if (channels <= 0) throw new IllegalArgumentException("channels must be positive, got " + channels);
        if (!Hadamard.isPowerOfTwo(group)) throw new IllegalArgumentException("Hadamard group must be a power of two, got " + group);
        if (group % grid.dim() != 0) {
            throw new IllegalArgumentException("Hadamard group " + group + " is not a multiple of the grid dimension " + grid.dim());
        }
        this.grid = grid;
        this.channels = channels;
        this.group = group;
        this.groups = (channels + group - 1) / group;
        this.codesPerGroup = group / grid.dim();
    }

    public GaussianGrid grid() {
        return grid;
    }

    public int channels() {
        return channels;
    }

    public int group() {
        return group;
    }

    public int groups() {
        return groups;
    }

    public int codes() {
        return groups * codesPerGroup;
    }

    /** Bits of one code. */
    public int codeBits() {
        return grid.codeBits();
    }

    /** Exact stored bytes of one quantized vector: packed codes plus a binary16 norm per group. */
    public int bytesPerVector() {
        return BitPacking.bytesFor(codes(), grid.codeBits()) + 2 * groups;
    }

    /** Quantizes {@code x[off..off+channels)}: codes into {@code codes} (length {@link #codes()}), binary16 norms into {@code norms}. */
    public void quantize(float[] x, int off, int[] codes, short[] norms) {
        float[] buf = new float[group];
        int dim = grid.dim();
        for (int g = 0; g < groups; g++) {
            java.util.Arrays.fill(buf, 0f);
            int start = g * group;
            int len = Math.min(group, channels - start);
            System.arraycopy(x, off + start, buf, 0, len);
            double ss = 0;
            for (int i = 0; i < len; i++) ss += (double) buf[i] * buf[i];
            short normBits = Half.bits((float) Math.sqrt(ss));
            float norm = Half.value(normBits);
            norms[g] = normBits;
            if (norm == 0f) {
                int zero = grid.nearest(new float[dim], 0);
                for (int c = 0; c < codesPerGroup; c++) codes[g * codesPerGroup + c] = zero;
                continue;
            }
            Hadamard.transform(buf, 0, group);
            float inv = 1f / norm;
            for (int i = 0; i < group; i++) buf[i] *= inv;
            for (int c = 0; c < codesPerGroup; c++) codes[g * codesPerGroup + c] = grid.nearest(buf, c * dim);
        }
    }

    /** Writes the reconstruction of (codes, norms) into {@code out[off..off+channels)}. */
    public void dequantize(int[] codes, short[] norms, float[] out, int off) {
        float[] buf = new float[group];
        int dim = grid.dim();
        for (int g = 0; g < groups; g++) {
            float norm = Half.value(norms[g]);
            for (int c = 0; c < codesPerGroup; c++) {
                int code = codes[g * codesPerGroup + c];
                for (int d = 0; d < dim; d++) buf[c * dim + d] = grid.coordinate(code, d) * norm;
            }
            Hadamard.transform(buf, 0, group);
            float inv = 1f / group;
            int start = g * group;
            int len = Math.min(group, channels - start);
            for (int i = 0; i < len; i++) out[off + start + i] = buf[i] * inv;
        }
    }

    /** Quantize then dequantize {@code x[off..)} into {@code out[outOff..)}. */
    public void roundTrip(float[] x, int off, float[] out, int outOff) {
        int[] codes = new int[codes()];
        short[] norms = new short[groups];
        quantize(x, off, codes, norms);
        dequantize(codes, norms, out, outOff);
    }
}
