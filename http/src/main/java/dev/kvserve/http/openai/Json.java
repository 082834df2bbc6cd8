package dev.kvserve.http.openai;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.UncheckedIOException;

/** The one JSON mapper of the server, strict on input (no trailing garbage, no comments). */
public final class Json {

    public static final ObjectMapper MAPPER = JsonMapper.builder()
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .disable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
            .build();

    private Json() {}

    /** Parses a request body that must be one JSON object; anything else is a 400. */
    public static ObjectNode parseObject(byte[] body) {
        if (body.length == 0) throw ApiException.invalid(null, "The request body is empty; expected a JSON object");
        JsonNode node;
        try {
            node = MAPPER.readTree(body);
        } catch (JsonProcessingException e) {
            throw ApiException.invalid(null, "We could not parse the JSON body of your request: " + e.getOriginalMessage()
                    + (e.getLocation() == null ? "" : " (line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ")"));
        } catch (IOException e) {
            throw ApiException.invalid(null, "We could not read the JSON body of your request: " + e.getMessage());
        }
        if (node == null || node.isMissingNode()) throw ApiException.invalid(null, "The request body is empty; expected a JSON object");
        if (!(node instanceof ObjectNode object)) {
            throw ApiException.invalid(null, "The request body must be a JSON object, got " + kind(node));
        }
        return object;
    }

    public static byte[] bytes(JsonNode node) {
        try {
            return MAPPER.writeValueAsBytes(node);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** How a value is called in error messages, in JSON's own words. */
    static String kind(JsonNode node) {
        if (node == null || node.isNull()) return "null";
        if (node.isTextual()) return "a string";
        if (node.isBoolean()) return "a boolean";
        if (node.isIntegralNumber()) return "an integer";
        if (node.isNumber()) return "a number";
        if (node.isArray()) return "an array";
        if (node.isObject()) return "an object";
        return node.getNodeType().toString().toLowerCase();
    }
}
