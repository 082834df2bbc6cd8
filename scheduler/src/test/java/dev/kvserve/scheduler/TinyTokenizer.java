package dev.kvserve.scheduler;

import dev.kvserve.runtime.tokenizer.TokenType;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Set;

/** A byte-level tokenizer for engine tests: {@code <unk>}=0, BOS=1, EOS=2, then one token per byte (id = byte + 3). */
final class TinyTokenizer implements Tokenizer {

    static final int BOS = 1;
    static final int EOS = 2;
    static final int VOCAB = 259;

    static int tokenOf(int b) {
        return (b & 0xFF) + 3;
    }

    @Override public int[] encode(String text, boolean addBos, boolean parseSpecial) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        int[] ids = new int[bytes.length + (addBos ? 1 : 0)];
        int i = 0;
        if (addBos) ids[i++] = BOS;
        for (byte b : bytes) ids[i++] = tokenOf(b);
        return ids;
    }

    @Override public String decode(int[] ids) {
        return decode(ids, true);
    }

    @Override public String decode(int[] ids, boolean skipSpecial) {
        var out = new ByteArrayOutputStream();
        for (int id : ids) {
            if (skipSpecial && isSpecial(id)) continue;
            out.writeBytes(tokenBytes(id));
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    @Override public byte[] tokenBytes(int id) {
        return id >= 3 ? new byte[] {(byte) (id - 3)} : piece(id).getBytes(StandardCharsets.UTF_8);
    }

    @Override public String piece(int id) {
        return switch (id) {
            case 0 -> "<unk>";
            case BOS -> "<s>";
            case EOS -> "</s>";
            default -> String.format("<0x%02X>", id - 3);
        };
    }

    @Override public int tokenId(String piece) {
        for (int id = 0; id < VOCAB; id++) if (piece(id).equals(piece)) return id;
        return -1;
    }

    @Override public int vocabSize() { return VOCAB; }

    @Override public TokenType tokenType(int id) {
        return id == 0 ? TokenType.UNKNOWN : id < 3 ? TokenType.CONTROL : TokenType.BYTE;
    }

    @Override public int bos() { return BOS; }

    @Override public int eos() { return EOS; }

    @Override public boolean addsBos() { return true; }

    @Override public boolean isSpecial(int id) { return id < 3; }

    @Override public Set<Integer> endOfGenerationIds() { return Set.of(EOS); }
}
