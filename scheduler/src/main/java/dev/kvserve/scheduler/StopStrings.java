package dev.kvserve.scheduler;

import java.util.List;

/**
 * Accumulates a generation's text and decides, as it grows, which part is final: text is cut
 * exactly before the earliest occurrence of any stop string, and while streaming the longest tail
 * that could still be the beginning of a stop string is held back, so a client never receives
 * text that a later token turns into a stop. Not thread-safe (one per sequence).
 */
final class StopStrings {

    private final List<String> stops;
    private final int longest;
    private final StringBuilder text = new StringBuilder();
    /** Characters of {@code text} already handed out. */
    private int released;
    /** Index where the earliest stop string starts, or -1. */
    private int stopAt = -1;
    private String matched;

    StopStrings(List<String> stops) {
        this.stops = stops.stream().filter(s -> !s.isEmpty()).distinct().toList();
        this.longest = this.stops.stream().mapToInt(String::length).max().orElse(0);
    }

    /**
     * Adds decoded text; returns the text that became final (possibly empty). After a stop string
     * matched, {@link #stopped()} is true and further text is ignored.
     */
    String append(String delta) {
        if (stopAt >= 0 || delta.isEmpty()) return "";
        int searchFrom = Math.max(0, text.length() - longest + 1);
        text.append(delta);
        for (String stop : stops) {
            int at = text.indexOf(stop, searchFrom);
            if (at >= 0 && (stopAt < 0 || at < stopAt)) {
                stopAt = at;
                matched = stop;
            }
        }
        int end = stopAt >= 0 ? stopAt : text.length() - heldBack();
        return release(Math.max(end, released));
    }

    /** The generation ended for another reason: everything not yet handed out (up to a stop) is final. */
    String flush() {
        return release(stopAt >= 0 ? Math.max(stopAt, released) : text.length());
    }

    boolean stopped() {
        return stopAt >= 0;
    }

    /** The stop string that matched, or null. */
    String matched() {
        return matched;
    }

    /** The final text so far (everything released). */
    String releasedText() {
        return text.substring(0, released);
    }

    /** Length of the longest suffix of the text that is a proper prefix of some stop string. */
    private int heldBack() {
        int max = Math.min(longest - 1, text.length() - released);
        for (int k = max; k > 0; k--) {
            int from = text.length() - k;
            for (String stop : stops) {
                if (stop.length() > k && startsWithAt(from, stop, k)) return k;
            }
        }
        return 0;
    }

    private boolean startsWithAt(int from, String stop, int k) {
        for (int j = 0; j < k; j++) if (text.charAt(from + j) != stop.charAt(j)) return false;
        return true;
    }

    private String release(int end) {
        String out = text.substring(released, end);
        released = end;
        return out;
    }
}
