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
                "The model '" + clip(model) + "' does not exist");
    }

    /** Most characters of a client's own input an error message repeats. */
    public static final int ECHO_LIMIT = 64;

    /**
     * {@code text} cut to {@link #ECHO_LIMIT} characters with an ellipsis: error messages quote what
     * the client sent so it can find its mistake, but never send a large input back (or into logs).
     */
    public static String clip(String text) {
        if (text == null || text.length() <= ECHO_LIMIT) return text;
        return text.substring(0, ECHO_LIMIT) + "...";
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
