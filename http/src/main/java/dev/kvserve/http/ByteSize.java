package dev.kvserve.http;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Byte counts as people write them: {@code 256MiB}, {@code 1.5GiB}, {@code 512MB}, {@code 64k}, {@code 1048576}. */
public final class ByteSize {

    private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([kmgt]?)(i?)(b?)", Pattern.CASE_INSENSITIVE);

    private ByteSize() {}

    /**
     * Parses a size. Binary units ({@code KiB}, {@code MiB}, ...) and bare letters ({@code k},
     * {@code M}, {@code G}, as -Xmx reads them) are powers of 1024; {@code KB}, {@code MB}, {@code GB}
     * are powers of 1000.
     */
    public static long parse(String text) {
        if (text == null) throw new IllegalArgumentException("a size is required");
        Matcher m = SIZE.matcher(text.trim());
        if (!m.matches()) {
            throw new IllegalArgumentException("'" + text + "' is not a size; write e.g. 256MiB, 1GiB, 512MB or 1048576");
        }
        String unit = m.group(2).toLowerCase(Locale.ROOT);
        boolean binary = !m.group(3).isEmpty() || m.group(4).isEmpty();
        if (unit.isEmpty() && (!m.group(3).isEmpty())) {
            throw new IllegalArgumentException("'" + text + "' is not a size; write e.g. 256MiB, 1GiB, 512MB or 1048576");
        }
        int power = switch (unit) {
            case "" -> 0;
            case "k" -> 1;
            case "m" -> 2;
            case "g" -> 3;
            default -> 4;
        };
        double base = binary ? 1024 : 1000;
        double bytes = Double.parseDouble(m.group(1)) * Math.pow(base, power);
        if (bytes > Long.MAX_VALUE) throw new IllegalArgumentException("'" + text + "' is too large");
        return (long) bytes;
    }

    /** The size in the largest binary unit that keeps it at least 1, e.g. {@code 256 MiB}. */
    public static String format(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        double value = bytes;
        int u = 0;
        while (value >= 1024 && u < units.length - 1) {
            value /= 1024;
            u++;
        }
        return value == Math.rint(value) ? String.format(Locale.ROOT, "%d %s", (long) value, units[u])
                : String.format(Locale.ROOT, "%.1f %s", value, units[u]);
    }
}
