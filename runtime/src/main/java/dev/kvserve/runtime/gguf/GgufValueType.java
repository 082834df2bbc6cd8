package dev.kvserve.runtime.gguf;

/** The type tag of a GGUF metadata value, numbered as the GGUF specification numbers them. */
public enum GgufValueType {
    UINT8(0, 1),
    INT8(1, 1),
    UINT16(2, 2),
    INT16(3, 2),
    UINT32(4, 4),
    INT32(5, 4),
    FLOAT32(6, 4),
    BOOL(7, 1),
    STRING(8, 8),
    ARRAY(9, 12),
    UINT64(10, 8),
    INT64(11, 8),
    FLOAT64(12, 8);

    /** The tag as stored in the file. */
    public final int id;
    /**
     * The fewest bytes one value of this type takes in a file (a string's length prefix, an array's
     * element type and count): lets the reader reject a count before allocating for it.
     */
    final int minBytes;

    GgufValueType(int id, int minBytes) {
        this.id = id;
        this.minBytes = minBytes;
    }

    /** The type with tag {@code id}, or null. */
    public static GgufValueType byId(long id) {
        for (GgufValueType t : values()) if (t.id == id) return t;
        return null;
    }

    boolean isInteger() {
        return switch (this) {
            case UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64 -> true;
            default -> false;
        };
    }
}
