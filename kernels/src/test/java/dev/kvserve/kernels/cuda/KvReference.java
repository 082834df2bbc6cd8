package dev.kvserve.kernels.cuda;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Scalar Java versions of the paged KV formats, written from {@link PagedKvLayout}'s description:
 * what a token becomes after quantization, and how to read a token back from a pool's bytes.
 */
final class KvReference {

    private KvReference() {}

    /** One head of one token after a round trip through {@code format} (group = channels per scale). */
    static float[] roundTrip(KvFormat format, float[] x, int group) {
        float[] y = new float[x.length];
        switch (format) {
            case F32 -> System.arraycopy(x, 0, y, 0, x.length);
            case F16 -> { for (int c = 0; c < x.length; c++) y[c] = Float.float16ToFloat(Float.floatToFloat16(x[c])); }
            case INT8 -> {
                for (int g = 0; g < x.length / group; g++) {
                    float amax = 0;
                    for (int c = g * group; c < (g + 1) * group; c++) amax = Math.max(amax, Math.abs(x[c]));
                    float s = Float.float16ToFloat(Float.floatToFloat16(amax / 127f));
                    for (int c = g * group; c < (g + 1) * group; c++) {
                        int q = s > 0 ? (int) Math.max(-127, Math.min(127, Math.rint(x[c] / s))) : 0;
                        y[c] = q * s;
                    }
                }
            }
            case INT4 -> {
                for (int g = 0; g < x.length / group; g++) {
                    float mn = Float.POSITIVE_INFINITY, mx = Float.NEGATIVE_INFINITY;
                    for (int c = g * group; c < (g + 1) * group; c++) {
                        mn = Math.min(mn, x[c]);
                        mx = Math.max(mx, x[c]);
                    }
                    float s = Float.float16ToFloat(Float.floatToFloat16((mx - mn) / 15f));
                    float m = Float.float16ToFloat(Float.floatToFloat16(mn));
                    for (int c = g * group; c < (g + 1) * group; c++) {
                        int q = s > 0 ? (int) Math.max(0, Math.min(15, Math.rint((x[c] - m) / s))) : 0;
                        y[c] = q * s + m;
                    }
                }
            }
        }
        return y;
    }

    /** Token in {@code slot}, head {@code h}, decoded from a pool's bytes. */
    static float[] read(PagedKvLayout l, byte[] pool, int slot, int h) {
        ByteBuffer buf = ByteBuffer.wrap(pool).order(ByteOrder.LITTLE_ENDIAN);
        int block = slot / l.blockTokens(), t = slot % l.blockTokens();
        int D = l.headDim(), B = l.blockTokens(), groups = D / l.group();
        int head = Math.toIntExact(block * l.blockBytes() + h * l.headBytes());
        float[] y = new float[D];
        for (int c = 0; c < D; c++) {
            y[c] = switch (l.format()) {
                case F32 -> buf.getFloat(head + 4 * (t * D + c));
                case F16 -> Float.float16ToFloat(buf.getShort(head + 2 * (t * D + c)));
                case INT8 -> {
                    int code = buf.get(head + t * D + c);
                    float s = Float.float16ToFloat(buf.getShort(head + (int) l.paramsOffset() + 2 * (t * groups + c / l.group())));
                    yield code * s;
                }
                case INT4 -> {
                    int b = buf.get(head + t * (D / 2) + c / 2) & 0xFF;
                    int code = (c & 1) == 1 ? b >> 4 : b & 0xF;
                    int p = head + (int) l.paramsOffset() + 4 * (t * groups + c / l.group());
                    float s = Float.float16ToFloat(buf.getShort(p)), m = Float.float16ToFloat(buf.getShort(p + 2));
                    yield code * s + m;
                }
            };
        }
        return y;
    }
}
