package dev.kvserve.runtime.tokenizer;

import java.lang.reflect.Array;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Typed reads of GGUF metadata whatever Java shapes the reader chose: arrays may come as primitive
 * or boxed arrays, Lists or other Iterables; integers as any Number (uint32 possibly as Long).
 */
final class MetadataValues {
    private final Map<String, ?> metadata;

    MetadataValues(Map<String, ?> metadata) {
        if (metadata == null) {
            throw new IllegalArgumentException("GGUF metadata map is null");
        }
        this.metadata = metadata;
    }

    boolean has(String key) {
        return metadata.get(key) != null;
    }

    String string(String key, String fallback) {
        Object value = metadata.get(key);
        if (value == null) {
            return fallback;
        }
        if (value instanceof CharSequence text) {
            return text.toString();
        }
        throw wrongType(key, value, "a string");
    }

    String requireString(String key) {
        String value = string(key, null);
        if (value == null) {
            throw new IllegalArgumentException("GGUF metadata has no '" + key + "'");
        }
        return value;
    }

    boolean bool(String key, boolean fallback) {
        Object value = metadata.get(key);
        if (value == null) {
            return fallback;
        }
        if (value instanceof Boolean b) {
            return b;
        }
        if (value instanceof Number number) {
            return number.longValue() != 0;
        }
        throw wrongType(key, value, "a boolean");
    }

    /**
     * A token id: absent or GGUF's "none" (uint32 0xFFFFFFFF, or -1) gives {@code fallback};
     * any other id outside {@code [0, vocabSize)} is an error.
     */
    int tokenId(String key, int fallback, int vocabSize) {
        Object value = metadata.get(key);
        if (value == null) {
            return fallback;
        }
        if (!(value instanceof Number number)) {
            throw wrongType(key, value, "an integer token id");
        }
        long id = number.longValue();
        if (id == -1 || id == 0xFFFFFFFFL) {
            return -1;
        }
        if (id < 0 || id >= vocabSize) {
            throw new IllegalArgumentException("GGUF metadata '" + key + "' = " + id
                    + " is outside the vocabulary of " + vocabSize + " tokens");
        }
        return (int) id;
    }

    String[] strings(String key) {
        List<Object> items = elements(key);
        if (items == null) {
            return null;
        }
        String[] result = new String[items.size()];
        for (int i = 0; i < result.length; i++) {
            if (!(items.get(i) instanceof CharSequence text)) {
                throw new IllegalArgumentException("GGUF metadata '" + key + "'[" + i + "] is "
                        + describe(items.get(i)) + ", expected a string");
            }
            result[i] = text.toString();
        }
        return result;
    }

    float[] floats(String key) {
        Object value = metadata.get(key);
        if (value instanceof float[] array) {
            return array;
        }
        List<Object> items = elements(key);
        if (items == null) {
            return null;
        }
        float[] result = new float[items.size()];
        for (int i = 0; i < result.length; i++) {
            result[i] = number(key, i, items.get(i)).floatValue();
        }
        return result;
    }

    int[] ints(String key) {
        Object value = metadata.get(key);
        if (value instanceof int[] array) {
            return array;
        }
        List<Object> items = elements(key);
        if (items == null) {
            return null;
        }
        int[] result = new int[items.size()];
        for (int i = 0; i < result.length; i++) {
            result[i] = number(key, i, items.get(i)).intValue();
        }
        return result;
    }

    private List<Object> elements(String key) {
        Object value = metadata.get(key);
        if (value == null) {
            return null;
        }
        List<Object> items = new ArrayList<>();
        if (value.getClass().isArray()) {
            int length = Array.getLength(value);
            for (int i = 0; i < length; i++) {
                items.add(Array.get(value, i));
            }
        } else if (value instanceof Iterable<?> iterable) {
            iterable.forEach(items::add);
        } else {
            throw wrongType(key, value, "an array");
        }
        return items;
    }

    private static Number number(String key, int index, Object item) {
        if (item instanceof Number number) {
            return number;
        }
        throw new IllegalArgumentException("GGUF metadata '" + key + "'[" + index + "] is " + describe(item)
                + ", expected a number");
    }

    private static IllegalArgumentException wrongType(String key, Object value, String expected) {
        return new IllegalArgumentException("GGUF metadata '" + key + "' is " + describe(value) + ", expected " + expected);
    }

    private static String describe(Object value) {
        return value == null ? "null" : "a " + value.getClass().getSimpleName();
    }
}
