package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.policy.ParamSpec;
import java.util.Locale;

/**
 * A number of tokens written either as a count ({@code 256}) or as a fraction of the sequence
 * ({@code 0.25}): the form every eviction rule and selector takes for its budget and recent window.
 * A fraction is of the tokens the sequence holds when the decision is made (the prompt length at the
 * end of prefill, growing during decoding), rounded up.
 *
 * @param value    the count, or the fraction in (0, 1]
 * @param fraction true when {@code value} is a fraction
 */
public record Budget(double value, boolean fraction) {

    public static final Budget NONE = new Budget(0, false);

    public Budget {
        if (fraction ? !(value > 0 && value <= 1) : (value < 0 || value != Math.rint(value))) {
            throw new IllegalArgumentException("bad budget " + value + (fraction ? " (fraction)" : " (tokens)"));
        }
    }

    public static Budget ofTokens(int n) {
        return new Budget(n, false);
    }

    public static Budget ofFraction(double f) {
        return new Budget(f, true);
    }

    /** Tokens this budget allows a sequence of {@code length} tokens. */
    public int tokensFor(int length) {
        if (!fraction) return (int) value;
        return (int) Math.ceil(value * length - 1e-9);
    }

    /**
     * Parses {@code 256} (tokens) or {@code 0.25} (a fraction: a number with a decimal point, in
     * (0, 1]). Integers are always token counts, so {@code 1} means one token and {@code 1.0} all.
     */
    public static Budget parse(String s) {
        String t = s.trim();
        if (t.matches("\\d+")) {
            try {
                return ofTokens(Integer.parseInt(t));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("too large");
            }
        }
        double v;
        try {
            v = Double.parseDouble(t);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("not a number");
        }
        if (!(v > 0 && v <= 1)) throw new IllegalArgumentException("a fraction must be in (0, 1]");
        return ofFraction(v);
    }

    /** Spec parameter: a token count >= {@code minTokens} or a fraction in (0, 1]. */
    public static ParamSpec param(String name, String defaultValue, int minTokens) {
        return new ParamSpec(name, "a token count >= " + minTokens + " or a fraction of the sequence in (0, 1] such as 0.25",
                defaultValue, s -> {
            Budget b = parse(s);
            if (!b.fraction && b.value < minTokens) throw new IllegalArgumentException("out of range");
            return b;
        }, v -> v.toString());
    }

    @Override
    public String toString() {
        if (!fraction) return Integer.toString((int) value);
        String s = Double.toString(value);
        return s.contains("E") ? String.format(Locale.ROOT, "%.12f", value).replaceAll("0+$", "") : s;
    }
}
