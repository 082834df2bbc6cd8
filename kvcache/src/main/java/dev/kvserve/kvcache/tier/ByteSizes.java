package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.policy.ParamSpec;
import java.util.Locale;

/** Byte sizes in specs: {@code 4096}, {@code 64KiB}, {@code 2GiB} (also KB/MB/GB as powers of 1024, and K/M/G). */
final class ByteSizes {

    private ByteSizes() {}

    private static final String[] UNITS = {"", "KiB", "MiB", "GiB", "TiB"};

    static long parse(String text) {
        String t = text.trim();
        int i = 0;
        while (i < t.length() && Character.isDigit(t.charAt(i))) i++;
        if (i == 0) throw new IllegalArgumentException("not a byte size");
        long n;
        try {
            n = Long.parseLong(t.substring(0, i));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("not a byte size");
        }
        String unit = t.substring(i).trim().toLowerCase(Locale.ROOT);
        int shift = switch (unit) {
            case "", "b" -> 0;
            case "k", "kb", "kib" -> 10;
            case "m", "mb", "mib" -> 20;
            case "g", "gb", "gib" -> 30;
            case "t", "tb", "tib" -> 40;
            default -> throw new IllegalArgumentException("unknown unit '" + t.substring(i) + "'");
        };
        if (n > (Long.MAX_VALUE >> shift)) throw new IllegalArgumentException("too large");
        return n << shift;
    }

    static String format(long bytes) {
        int u = 0;
        while (u < UNITS.length - 1 && bytes != 0 && bytes % 1024 == 0) {
            bytes /= 1024;
            u++;
        }
        return bytes + UNITS[u];
    }

    static ParamSpec param(String name, String defaultValue) {
        return new ParamSpec(name, "a byte size such as 4096, 64KiB, 2GiB", defaultValue, s -> parse(s),
                v -> format((Long) v));
    }
}
