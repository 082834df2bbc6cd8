package dev.kvserve.http.openai;

import java.time.ZonedDateTime;
import java.time.format.TextStyle;
import java.util.Locale;

/** Python's {@code strftime} directives (C locale) over a java.time value. */
final class Strftime {

    private Strftime() {}

    static String format(String pattern, ZonedDateTime t) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < pattern.length(); i++) {
            char c = pattern.charAt(i);
            if (c != '%' || i + 1 == pattern.length()) {
                out.append(c);
                continue;
            }
            char d = pattern.charAt(++i);
            // glibc's "%-d" drops the padding; templates use it for day numbers.
            boolean unpadded = false;
            if (d == '-' && i + 1 < pattern.length()) {
                unpadded = true;
                d = pattern.charAt(++i);
            }
            switch (d) {
                case 'a' -> out.append(t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'A' -> out.append(t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'b', 'h' -> out.append(t.getMonth().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'B' -> out.append(t.getMonth().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'd' -> pad(out, t.getDayOfMonth(), 2, unpadded);
                case 'e' -> out.append(t.getDayOfMonth() < 10 ? " " : "").append(t.getDayOfMonth());
                case 'm' -> pad(out, t.getMonthValue(), 2, unpadded);
                case 'y' -> pad(out, t.getYear() % 100, 2, unpadded);
                case 'Y' -> out.append(t.getYear());
                case 'H' -> pad(out, t.getHour(), 2, unpadded);
                case 'I' -> pad(out, t.getHour() % 12 == 0 ? 12 : t.getHour() % 12, 2, unpadded);
                case 'M' -> pad(out, t.getMinute(), 2, unpadded);
                case 'S' -> pad(out, t.getSecond(), 2, unpadded);
                case 'p' -> out.append(t.getHour() < 12 ? "AM" : "PM");
                case 'j' -> pad(out, t.getDayOfYear(), 3, unpadded);
                case 'f' -> pad(out, t.getNano() / 1000, 6, false);
                case 'w' -> out.append(t.getDayOfWeek().getValue() % 7);
                case 'u' -> out.append(t.getDayOfWeek().getValue());
                case 'Z' -> out.append(t.getZone().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'z' -> out.append(t.getOffset().getId().equals("Z") ? "+0000" : t.getOffset().getId().replace(":", ""));
                case 'F' -> out.append(format("%Y-%m-%d", t));
                case 'T' -> out.append(format("%H:%M:%S", t));
                case 'D' -> out.append(format("%m/%d/%y", t));
                case '%' -> out.append('%');
                default -> out.append('%').append(unpadded ? "-" : "").append(d);
            }
        }
        return out.toString();
    }

    private static void pad(StringBuilder out, int value, int width, boolean unpadded) {
        String s = Integer.toString(value);
        if (!unpadded) for (int k = s.length(); k < width; k++) out.append('0');
        out.append(s);
    }
}
