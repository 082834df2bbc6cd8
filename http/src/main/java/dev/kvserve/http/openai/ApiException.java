package dev.kvserve.http.openai;

import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A request the server refuses, carried up to the HTTP layer and written as OpenAI writes errors:
 * {@code {"error": {"message", "type", "param", "code"}}} with the given status.
 */
public final class ApiException extends RuntimeException {

    private final int status;
    private final String type;
    private final String param;
    private final String code;

    public ApiException(int status, String type, String param, String code, String message) {
        super(message, null, false, false);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400: the request is malformed or a value is out of range; {@code param} names the field. */
    public static ApiException invalid(String param, String message) {
        return new ApiException(400, "invalid_request_error", param, null, message);
    }

    public static ApiException invalid(String param, String code, String message) {
        return new ApiException(400, "invalid_request_error", param, code, message);
    }

    public static ApiException modelNotFound(String model) {
        return new ApiException(404, "invalid_request_error", "model", "model_not_found",
                "The model '" + excerpt(model) + "' does not exist");
    }

    /** Most characters of client text an error message repeats. */
    public static final int MAX_ECHO = 64;

    /**
     * Client text as an error message may repeat it: at most {@link #MAX_ECHO} characters, then an
     * ellipsis, so a huge header or path does not come back whole (or fill the logs).
     */
    public static String excerpt(String clientText) {
        if (clientText == null) return "";
        if (clientText.length() <= MAX_ECHO) return clientText;
        int end = MAX_ECHO;
        if (Character.isHighSurrogate(clientText.charAt(end - 1))) end--;
        return clientText.substring(0, end) + "\u2026";
    }

    public static ApiException overloaded(String message) {
        return new ApiException(503, "server_error", null, "server_overloaded", message);
    }

    public int status() { return status; }
    public String type() { return type; }
    public String param() { return param; }
    public String code() { return code; }

    /** The response body. */
    public ObjectNode toJson() {
        return errorBody(getMessage(), type, param, code);
    }

    public static ObjectNode errorBody(String message, String type, String param, String code) {
        ObjectNode root = Json.MAPPER.createObjectNode();
        ObjectNode error = root.putObject("error");
        error.put("message", message);
        error.put("type", type);
        error.put("param", param);
        error.put("code", code);
        return root;
    }
}
