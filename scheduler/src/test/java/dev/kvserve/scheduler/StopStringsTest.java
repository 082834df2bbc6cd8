package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class StopStringsTest {

    @Test
    void cutsExactlyBeforeAStopSplitOverDeltas() {
        var stops = new StopStrings(List.of("\n\n", "THE END"));
        List<String> out = new ArrayList<>();
        for (String delta : List.of("Once", " upon a T", "HE", " E", "ND and more")) out.add(stops.append(delta));
        assertThat(stops.stopped()).isTrue();
        assertThat(stops.matched()).isEqualTo("THE END");
        assertThat(String.join("", out)).isEqualTo("Once upon a ");
        // "T", "THE", "THE E" were held back while they could still start the stop.
        assertThat(out).containsExactly("Once", " upon a ", "", "", "");
        assertThat(stops.flush()).isEmpty();
        assertThat(stops.append("later")).isEmpty();
    }

    @Test
    void releasesHeldTextOnceItCannotBeAStopAnymore() {
        var stops = new StopStrings(List.of("abc"));
        assertThat(stops.append("xa")).isEqualTo("x");
        assertThat(stops.append("b")).isEmpty();
        assertThat(stops.append("d")).isEqualTo("abd");
        assertThat(stops.append("ab")).isEmpty();
        assertThat(stops.flush()).as("generation ended for another reason").isEqualTo("ab");
        assertThat(stops.stopped()).isFalse();
    }

    @Test
    void picksTheEarliestOfOverlappingStops() {
        var stops = new StopStrings(List.of("cd", "bcde"));
        assertThat(stops.append("abcdef")).isEqualTo("a");
        assertThat(stops.matched()).isEqualTo("bcde");
    }

    @Test
    void noStopsReleaseEverythingAtOnce() {
        var stops = new StopStrings(List.of("", ""));
        assertThat(stops.append("hello")).isEqualTo("hello");
        assertThat(stops.stopped()).isFalse();
    }

    /** Whatever the split of the text into deltas, the released text is the text up to the first stop. */
    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8})
    void anySplitGivesTheSameCut(long seed) {
        var random = new Random(seed);
        var alphabet = "ab \n";
        var text = new StringBuilder();
        for (int i = 0; i < 200; i++) text.append(alphabet.charAt(random.nextInt(alphabet.length())));
        List<String> stopList = List.of("ab\n", "b b a", "\n\n\n");
        int cut = text.length();
        for (String stop : stopList) {
            int at = text.indexOf(stop);
            if (at >= 0) cut = Math.min(cut, at);
        }
        var stops = new StopStrings(stopList);
        var released = new StringBuilder();
        int pos = 0;
        while (pos < text.length() && !stops.stopped()) {
            int end = Math.min(text.length(), pos + 1 + random.nextInt(5));
            released.append(stops.append(text.substring(pos, end)));
            // Nothing released may ever extend into a stop.
            assertThat(text.substring(0, released.length())).isEqualTo(released.toString());
            assertThat(released.length()).isLessThanOrEqualTo(cut);
            pos = end;
        }
        released.append(stops.flush());
        assertThat(released.toString()).isEqualTo(text.substring(0, cut));
    }
}
