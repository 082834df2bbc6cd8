package dev.kvserve.runtime.gguf;

/**
 * A typed array for {@link GgufWriter#putArray}: the element type says how the Java array is stored
 * (an {@code int[]} may be INT32 or UINT32). {@code values} is the Java array that
 * {@link dev.kvserve.runtime.ModelFile} documents for that element type, or, for an array of arrays,
 * a {@code GgufArray[]}.
 */
public record GgufArray(GgufValueType elementType, Object values) {

    public GgufArray {
        if (elementType == null || values == null) throw new IllegalArgumentException("element type and values are required");
        Class<?> expected = javaArrayType(elementType);
        if (!expected.isInstance(values)) {
            throw new IllegalArgumentException("a GGUF array of " + elementType + " is written from a "
                    + expected.getSimpleName() + ", not a " + values.getClass().getSimpleName());
        }
    }

    public int length() {
        return java.lang.reflect.Array.getLength(values);
    }

    static Class<?> javaArrayType(GgufValueType elementType) {
        return switch (elementType) {
            case UINT8, INT8 -> byte[].class;
            case UINT16, INT16 -> short[].class;
            case UINT32, INT32 -> int[].class;
            case UINT64, INT64 -> long[].class;
            case FLOAT32 -> float[].class;
            case FLOAT64 -> double[].class;
            case BOOL -> boolean[].class;
            case STRING -> String[].class;
            case ARRAY -> GgufArray[].class;
        };
    }
}
