package dev.kvserve.http.openai;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.List;

/**
 * Typed, range-checked reads of a request object's fields. Every failure is a 400 naming the field,
 * the rule and the value received, so a client never has to guess what was wrong.
 */
final class Fields {

    private final ObjectNode node;

    Fields(ObjectNode node) {
        this.node = node;
    }

    ObjectNode node() {
        return node;
    }

    /** The field, or null when absent or JSON null (OpenAI treats both as "not given"). */
    JsonNode get(String name) {
        JsonNode value = node.get(name);
        return value == null || value.isNull() ? null : value;
    }

    boolean has(String name) {
        return get(name) != null;
    }

    String string(String name) {
        JsonNode value = get(name);
        if (value == null) return null;
        if (!value.isTextual()) throw wrongType(name, "a string", value);
        return value.textValue();
    }

    boolean bool(String name, boolean fallback) {
        JsonNode value = get(name);
        if (value == null) return fallback;
        if (!value.isBoolean()) throw wrongType(name, "a boolean", value);
        return value.booleanValue();
    }

    Long longValue(String name) {
        JsonNode value = get(name);
        if (value == null) return null;
        return integral(name, value);
    }

    /** An integer in [min, max], or {@code fallback} when absent. */
    Integer integer(String name, Integer fallback, long min, long max) {
        JsonNode value = get(name);
        if (value == null) return fallback;
        long v = integral(name, value);
        if (v < min) throw ApiException.invalid(name, "'" + name + "' must be >= " + min + ", got " + v);
        if (v > max) throw ApiException.invalid(name, "'" + name + "' must be <= " + max + ", got " + v);
        return (int) v;
    }

    /** A number in [min, max] (or (min, max] when {@code minExclusive}), or {@code fallback} when absent. */
    double number(String name, double fallback, double min, double max, boolean minExclusive) {
        JsonNode value = get(name);
        if (value == null) return fallback;
        if (!value.isNumber()) throw wrongType(name, "a number", value);
        double v = value.doubleValue();
        if (!Double.isFinite(v)) throw ApiException.invalid(name, "'" + name + "' must be a finite number, got " + value);
        boolean tooLow = minExclusive ? v <= min : v < min;
        if (tooLow || v > max) {
            throw ApiException.invalid(name, "'" + name + "' must be in " + (minExclusive ? "(" : "[") + fmt(min) + ", "
                    + fmt(max) + "], got " + value.asText());
        }
        return v;
    }

    /** A string or an array of strings (as {@code stop} is given), each non-empty; empty list when absent. */
    List<String> stringOrStrings(String name, int maxCount) {
        JsonNode value = get(name);
        List<String> out = new ArrayList<>();
        if (value == null) return out;
        if (value.isTextual()) {
            out.add(value.textValue());
        } else if (value.isArray()) {
            for (int i = 0; i < value.size(); i++) {
                JsonNode item = value.get(i);
                if (!item.isTextual()) throw wrongType(name + "[" + i + "]", "a string", item);
                out.add(item.textValue());
            }
        } else {
            throw wrongType(name, "a string or an array of strings", value);
        }
        if (out.size() > maxCount) {
            throw ApiException.invalid(name, "'" + name + "' holds at most " + maxCount + " strings, got " + out.size());
        }
        for (String s : out) {
            if (s.isEmpty()) throw ApiException.invalid(name, "'" + name + "' must not contain empty strings");
        }
        return out;
    }

    /** Rejects a field whose presence would change the output in a way this server cannot honour. */
    void unsupported(String name, String why) {
        JsonNode value = get(name);
        if (value == null) return;
        if ((value.isArray() || value.isObject()) && value.isEmpty()) return;
        throw ApiException.invalid(name, "'" + name + "' is not supported by this server" + (why == null ? "" : ": " + why));
    }

    static long integral(String name, JsonNode value) {
        if (value.isIntegralNumber()) {
            if (!value.canConvertToLong()) throw ApiException.invalid(name, "'" + name + "' is out of range: " + value.asText());
            return value.longValue();
        }
        // Some clients serialise whole numbers as 16.0; accept those, refuse 16.5.
        if (value.isFloatingPointNumber() && value.doubleValue() == Math.rint(value.doubleValue())
                && Math.abs(value.doubleValue()) < 9.0e15) {
            return (long) value.doubleValue();
        }
        throw wrongType(name, "an integer", value);
    }

    static ApiException wrongType(String name, String expected, JsonNode got) {
        String shown = got.isTextual() ? got.toString() : got.toString();
        if (shown.length() > 60) shown = shown.substring(0, 57) + "...";
        return ApiException.invalid(name, "'" + name + "' must be " + expected + ", got " + Json.kind(got) + ": " + shown);
    }

    private static String fmt(double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? Long.toString((long) v) : Double.toString(v);
    }
}
