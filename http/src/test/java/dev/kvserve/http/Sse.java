package dev.kvserve.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvserve.http.openai.Json;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Parses a server-sent-event body the way strict OpenAI clients read it, failing on any stray byte. */
final class Sse {

    private Sse() {}

    /** The JSON payloads of every event before the final {@code data: [DONE]}. */
    static List<JsonNode> events(String body) {
        assertThat(body).as("SSE body").endsWith("data: [DONE]\n\n");
        String[] frames = body.split("\n\n", -1);
        // split leaves one empty string after the last separator
        assertThat(frames[frames.length - 1]).isEmpty();
        List<JsonNode> out = new ArrayList<>();
        for (int i = 0; i < frames.length - 1; i++) {
            String frame = frames[i];
            assertThat(frame).as("frame %d", i).startsWith("data: ").doesNotContain("\n");
            String payload = frame.substring("data: ".length());
            if (i == frames.length - 2) {
                assertThat(payload).isEqualTo("[DONE]");
                break;
            }
            try {
                out.add(Json.MAPPER.readTree(payload));
            } catch (IOException e) {
                throw new UncheckedIOException("frame " + i + " is not JSON: " + payload, e);
            }
        }
        return out;
    }
}
