package dev.kvserve.runtime.tokenizer;

import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.IntStream;

/** Token texts, kinds and the special ids shared by every tokenizer implementation. */
final class Vocabulary {
    /** End-of-turn texts that llama.cpp also treats as end of generation. */
    static final List<String> END_OF_GENERATION_TEXTS = List.of(
            "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
            "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "<end_of_utterance>", "<｜end▁of▁sentence｜>");

    final String[] pieces;
    final TokenType[] types;
    final byte[][] tokenBytes;
    final Map<String, Integer> idByPiece;
    final int bos;
    final int eos;
    final int unk;
    final boolean addBos;
    final Set<Integer> endOfGeneration;
    /** Control, unknown and user-defined tokens: what {@code parseSpecial=true} matches. */
    final SpecialTokenMatcher allSpecials;
    /** User-defined tokens only: matched even without {@code parseSpecial}. */
    final SpecialTokenMatcher userDefined;

    /**
     * @param extraEndOfGeneration further end ids the model declares (EOT, EOM); -1 entries are ignored
     */
    Vocabulary(String[] pieces, TokenType[] types, byte[][] tokenBytes, int bos, int eos, int unk,
               boolean addBos, int... extraEndOfGeneration) {
        if (pieces.length != types.length || pieces.length != tokenBytes.length) {
            throw new IllegalArgumentException("vocabulary arrays differ in length: " + pieces.length + " pieces, "
                    + types.length + " types, " + tokenBytes.length + " byte strings");
        }
        if (pieces.length == 0) {
            throw new IllegalArgumentException("vocabulary is empty");
        }
        this.pieces = pieces;
        this.types = types;
        this.tokenBytes = tokenBytes;
        this.bos = checkId("BOS", bos, pieces.length);
        this.eos = checkId("EOS", eos, pieces.length);
        this.unk = checkId("unknown", unk, pieces.length);
        if (addBos && bos < 0) {
            throw new IllegalArgumentException("the tokenizer is configured to add BOS but has no BOS token id");
        }
        this.addBos = addBos;
        Map<String, Integer> byPiece = new HashMap<>(pieces.length * 2);
        for (int id = 0; id < pieces.length; id++) {
            if (pieces[id] == null) {
                throw new IllegalArgumentException("token " + id + " has no text");
            }
            byPiece.put(pieces[id], id);
        }
        this.idByPiece = byPiece;

        Set<Integer> ends = new LinkedHashSet<>();
        if (eos >= 0) ends.add(eos);
        for (int id : extraEndOfGeneration) {
            if (id >= 0 && id < pieces.length) ends.add(id);
        }
        for (String text : END_OF_GENERATION_TEXTS) {
            Integer id = byPiece.get(text);
            if (id != null) {
                ends.add(id);
            }
        }
        // Like llama.cpp: an end marker stored as a normal token must still never show up in output.
        for (int id : ends) {
            if (types[id] == TokenType.NORMAL) {
                types[id] = TokenType.CONTROL;
            }
        }
        this.endOfGeneration = Collections.unmodifiableSet(ends);

        this.allSpecials = new SpecialTokenMatcher(pieces, IntStream.range(0, pieces.length)
                .filter(id -> types[id] == TokenType.CONTROL || types[id] == TokenType.UNKNOWN
                        || types[id] == TokenType.USER_DEFINED)
                .toArray());
        this.userDefined = new SpecialTokenMatcher(pieces, IntStream.range(0, pieces.length)
                .filter(id -> types[id] == TokenType.USER_DEFINED).toArray());
    }

    private static int checkId(String what, int id, int vocabSize) {
        if (id < -1 || id >= vocabSize) {
            throw new IllegalArgumentException(what + " token id " + id + " is outside the vocabulary of " + vocabSize);
        }
        return id;
    }

    int size() {
        return pieces.length;
    }

    int id(String piece) {
        Integer id = idByPiece.get(piece);
        return id == null ? -1 : id;
    }

    void checkRange(int id) {
        if (id < 0 || id >= pieces.length) {
            throw new IllegalArgumentException("token id " + id + " is outside the vocabulary of " + pieces.length);
        }
    }

    boolean isSpecial(int id) {
        TokenType type = types[id];
        return type == TokenType.CONTROL || type == TokenType.UNKNOWN || type == TokenType.UNUSED;
    }
}
