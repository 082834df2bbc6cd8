package dev.kvserve.kvcache.policy;

import java.util.List;
import java.util.Locale;
import java.util.function.Function;

/**
 * One declared parameter of a policy method: its name, what values it takes and its default.
 * Values are parsed when the spec is parsed, so a bad value fails early with a message naming
 * the method, the parameter and what it accepts.
 *
 * @param name         parameter name as written in the spec ({@code group} in {@code int4:group=32})
 * @param accepts      human description of accepted values, used in error messages
 * @param defaultValue default as it would be written in a spec; null means the parameter is required
 * @param parser       turns the written value into the typed value, throwing IllegalArgumentException
 *                     with a short reason when it is not acceptable
 * @param operatorOnly the value names or sizes a server resource (a file, a directory, threads, memory):
 *                     only the operator may write it (CLI, embedded API, server profiles), never a
 *                     client's request
 */
public record ParamSpec(String name, String accepts, String defaultValue, Function<String, Object> parser,
                        Function<Object, String> printer, boolean operatorOnly) {

    public ParamSpec {
        if (name == null || !name.matches("[a-z][a-z0-9_]*")) {
            throw new IllegalArgumentException("parameter name must be lower-case identifier: " + name);
        }
        if (printer == null) printer = ParamSpec::print;
    }

    public ParamSpec(String name, String accepts, String defaultValue, Function<String, Object> parser,
                     Function<Object, String> printer) {
        this(name, accepts, defaultValue, parser, printer, false);
    }

    public ParamSpec(String name, String accepts, String defaultValue, Function<String, Object> parser) {
        this(name, accepts, defaultValue, parser, null);
    }

    /** The same parameter, settable by the operator only (see {@link #operatorOnly}). */
    public ParamSpec forOperatorOnly() {
        return new ParamSpec(name, accepts, defaultValue, parser, printer, true);
    }

    /** The typed value as it is written in a canonical spec. */
    public String format(Object value) {
        return printer.apply(value);
    }

    private static String print(Object v) {
        if (v instanceof Double d) return formatDouble(d);
        return String.valueOf(v);
    }

    public boolean required() {
        return defaultValue == null;
    }

    /** Integer in [min, max]. */
    public static ParamSpec ofInt(String name, Integer defaultValue, int min, int max) {
        String accepts = max == Integer.MAX_VALUE ? "an integer >= " + min : "an integer in [" + min + ", " + max + "]";
        return new ParamSpec(name, accepts, defaultValue == null ? null : defaultValue.toString(), s -> {
            int v;
            try {
                v = Integer.parseInt(s.trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("not an integer");
            }
            if (v < min || v > max) throw new IllegalArgumentException("out of range");
            return v;
        });
    }

    /** Integer from a fixed set, e.g. bits in {2, 4, 8}. */
    public static ParamSpec ofIntChoice(String name, Integer defaultValue, List<Integer> allowed) {
        return new ParamSpec(name, "one of " + allowed, defaultValue == null ? null : defaultValue.toString(), s -> {
            int v;
            try {
                v = Integer.parseInt(s.trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("not an integer");
            }
            if (!allowed.contains(v)) throw new IllegalArgumentException("not allowed");
            return v;
        });
    }

    /**
     * Positive integer, or the keyword {@code word} (typed value 0). Used for sizes whose natural
     * default depends on the model, e.g. {@code group=head} meaning "the whole head".
     */
    public static ParamSpec ofIntOrWord(String name, String defaultValue, String word, int min) {
        return new ParamSpec(name, "an integer >= " + min + " or '" + word + "'", defaultValue, s -> {
            String t = s.trim();
            if (t.equals(word)) return 0;
            int v;
            try {
                v = Integer.parseInt(t);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("not an integer");
            }
            if (v < min) throw new IllegalArgumentException("out of range");
            return v;
        }, v -> ((Integer) v) == 0 ? word : v.toString());
    }

    /** Finite floating-point number in [min, max]. */
    public static ParamSpec ofDouble(String name, Double defaultValue, double min, double max) {
        return new ParamSpec(name, "a number in [" + min + ", " + max + "]",
                defaultValue == null ? null : formatDouble(defaultValue), s -> {
            double v;
            try {
                v = Double.parseDouble(s.trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("not a number");
            }
            if (!(v >= min && v <= max)) throw new IllegalArgumentException("out of range");
            return v;
        });
    }

    /** One of a fixed set of words (case-sensitive, lower case by convention). */
    public static ParamSpec ofChoice(String name, String defaultValue, List<String> allowed) {
        return new ParamSpec(name, "one of " + allowed, defaultValue, s -> {
            String t = s.trim();
            if (!allowed.contains(t)) throw new IllegalArgumentException("not allowed");
            return t;
        });
    }

    /** {@code true} or {@code false}. */
    public static ParamSpec ofBoolean(String name, Boolean defaultValue) {
        return new ParamSpec(name, "true or false", defaultValue == null ? null : defaultValue.toString(), s -> {
            String t = s.trim().toLowerCase(Locale.ROOT);
            if (t.equals("true")) return true;
            if (t.equals("false")) return false;
            throw new IllegalArgumentException("not a boolean");
        });
    }

    /**
     * Free text (e.g. a calibration file path). It may not contain the spec's separators
     * {@code + , = :} since the spec could not be parsed back.
     */
    public static ParamSpec ofText(String name, String defaultValue) {
        return new ParamSpec(name, "text without '+', ',', '=' or ':'", defaultValue, s -> {
            String t = s.trim();
            if (t.isEmpty() || t.matches(".*[+,=:].*")) throw new IllegalArgumentException("not allowed");
            return t;
        });
    }

    static String formatDouble(double v) {
        if (v == Math.rint(v) && Math.abs(v) < 1e15) return Long.toString((long) v);
        return Double.toString(v);
    }
}
