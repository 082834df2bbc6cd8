package dev.kvserve.kvcache.quant;

/** IEEE binary16 helpers: what the papers store as "fp16" is stored here as exactly that. */
public final class Half {

    private Half() {}

    /** {@code x} rounded to the nearest binary16 value, back as a float. */
    public static float round(float x) {
        return Float.float16ToFloat(Float.floatToFloat16(x));
    }

    public static short bits(float x) {
        return Float.floatToFloat16(x);
    }

    public static float value(short bits) {
        return Float.float16ToFloat(bits);
    }

    /** Every value of {@code xs} rounded to binary16, in place; returns xs. */
    public static float[] roundAll(float[] xs) {
        for (int i = 0; i < xs.length; i++) xs[i] = round(xs[i]);
        return xs;
    }
}
