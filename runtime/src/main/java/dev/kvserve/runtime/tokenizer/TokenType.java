package dev.kvserve.runtime.tokenizer;

/** Token kinds with the codes GGUF stores in {@code tokenizer.ggml.token_type}. */
public enum TokenType {
    UNDEFINED(0), NORMAL(1), UNKNOWN(2), CONTROL(3), USER_DEFINED(4), UNUSED(5), BYTE(6);

    public final int ggufCode;

    TokenType(int ggufCode) {
        this.ggufCode = ggufCode;
    }

    public static TokenType fromGguf(int code) {
        for (TokenType type : values()) {
            if (type.ggufCode == code) {
                return type;
            }
        }
        throw new IllegalArgumentException("unknown GGUF token type " + code + " (expected 0..6)");
    }
}
