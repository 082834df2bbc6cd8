package dev.kvserve.runtime.tokenizer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/** Builds a {@link Tokenizer} from GGUF metadata or Hugging Face tokenizer files. */
public final class Tokenizers {
    private static final char SPACE_MARK = '\u2581';
    private static final Pattern BYTE_TOKEN = Pattern.compile("<0x[0-9A-Fa-f]{2}>");

    private Tokenizers() {
    }

    /**
     * A tokenizer from the {@code tokenizer.ggml.*} keys of a GGUF file: {@code model = llama}
     * (SentencePiece-style, score-driven merges) or {@code gpt2} (byte-level BPE with the split regexes
     * {@code tokenizer.ggml.pre} names). Array values may be Java arrays, Lists or Iterables.
     */
    public static Tokenizer fromGgufMetadata(Map<String, ?> metadata) {
        MetadataValues md = new MetadataValues(metadata);
        String model = md.requireString("tokenizer.ggml.model");
        String[] pieces = md.strings("tokenizer.ggml.tokens");
        if (pieces == null) {
            throw new IllegalArgumentException("GGUF metadata has no 'tokenizer.ggml.tokens'");
        }
        int size = pieces.length;
        TokenType[] types = ggufTypes(md, size);
        return switch (model) {
            case "llama" -> ggufSentencePiece(md, pieces, types);
            case "gpt2" -> ggufByteLevelBpe(md, pieces, types);
            default -> throw new IllegalArgumentException("unsupported tokenizer.ggml.model '" + model
                    + "': supported are 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)");
        };
    }

    private static TokenType[] ggufTypes(MetadataValues md, int size) {
        TokenType[] types = new TokenType[size];
        int[] codes = md.ints("tokenizer.ggml.token_type");
        if (codes == null) {
            Arrays.fill(types, TokenType.NORMAL);
            return types;
        }
        if (codes.length != size) {
            throw new IllegalArgumentException("tokenizer.ggml.token_type has " + codes.length
                    + " entries for " + size + " tokens");
        }
        for (int i = 0; i < size; i++) {
            types[i] = TokenType.fromGguf(codes[i]);
        }
        return types;
    }

    private static Tokenizer ggufSentencePiece(MetadataValues md, String[] pieces, TokenType[] types) {
        int size = pieces.length;
        float[] scores = md.floats("tokenizer.ggml.scores");
        if (scores == null) {
            scores = new float[size];
        } else if (scores.length != size) {
            throw new IllegalArgumentException("tokenizer.ggml.scores has " + scores.length + " entries for " + size + " tokens");
        }
        // llama.cpp's defaults for SentencePiece vocabularies.
        int unk = md.tokenId("tokenizer.ggml.unknown_token_id", size > 0 ? 0 : -1, size);
        int bos = md.tokenId("tokenizer.ggml.bos_token_id", size > 1 ? 1 : -1, size);
        int eos = md.tokenId("tokenizer.ggml.eos_token_id", size > 2 ? 2 : -1, size);
        boolean addBos = md.bool("tokenizer.ggml.add_bos_token", true) && bos >= 0;
        boolean addSpacePrefix = md.bool("tokenizer.ggml.add_space_prefix", true);
        byte[][] bytes = new byte[size][];
        for (int id = 0; id < size; id++) {
            bytes[id] = switch (types[id]) {
                case NORMAL, UNDEFINED -> pieces[id].replace(SPACE_MARK, ' ').getBytes(StandardCharsets.UTF_8);
                case BYTE -> byteTokenValue(pieces[id]);
                default -> pieces[id].getBytes(StandardCharsets.UTF_8);
            };
        }
        Vocabulary vocab = new Vocabulary(pieces, types, bytes, bos, eos, unk, addBos, ggufEndIds(md, size));
        return new SpmTokenizer(vocab, scores, addSpacePrefix);
    }

    private static Tokenizer ggufByteLevelBpe(MetadataValues md, String[] pieces, TokenType[] types) {
        int size = pieces.length;
        String[] mergeLines = md.strings("tokenizer.ggml.merges");
        if (mergeLines == null) {
            throw new IllegalArgumentException("GGUF metadata has no 'tokenizer.ggml.merges' for tokenizer model 'gpt2'");
        }
        PreTokenizerRegexes.PreType pre = PreTokenizerRegexes.forGgufPre(md.string("tokenizer.ggml.pre", null));
        int unk = md.tokenId("tokenizer.ggml.unknown_token_id", -1, size);
        int bos = md.tokenId("tokenizer.ggml.bos_token_id", -1, size);
        int eos = md.tokenId("tokenizer.ggml.eos_token_id", -1, size);
        // llama.cpp turns BOS on for Llama 3 unless the file says otherwise.
        boolean addBos = md.bool("tokenizer.ggml.add_bos_token", pre == PreTokenizerRegexes.PreType.LLAMA3) && bos >= 0;
        byte[][] bytes = new byte[size][];
        for (int id = 0; id < size; id++) {
            bytes[id] = switch (types[id]) {
                case NORMAL, UNDEFINED -> ByteLevel.decode(pieces[id]);
                case BYTE -> BYTE_TOKEN.matcher(pieces[id]).matches() ? byteTokenValue(pieces[id]) : ByteLevel.decode(pieces[id]);
                default -> pieces[id].getBytes(StandardCharsets.UTF_8);
            };
        }
        Vocabulary vocab = new Vocabulary(pieces, types, bytes, bos, eos, unk, addBos, ggufEndIds(md, size));
        List<String[]> pairs = new ArrayList<>(mergeLines.length);
        for (int i = 0; i < mergeLines.length; i++) {
            pairs.add(splitMerge(mergeLines[i], "tokenizer.ggml.merges[" + i + "]"));
        }
        TextPipeline pipeline = pre.pipeline();
        BpeTokenizer.Options options = new BpeTokenizer.Options(true, false, false, pre.ignoreMerges, false);
        return new BpeTokenizer(vocab, BpeTokenizer.mergeTable(vocab, pairs), pipeline, options);
    }

    private static int[] ggufEndIds(MetadataValues md, int size) {
        return new int[]{
                md.tokenId("tokenizer.ggml.eot_token_id", -1, size),
                md.tokenId("tokenizer.ggml.eom_token_id", -1, size)};
    }

    /** {@code "left right"}; the search starts at 1 so a left part may itself be a space (llama.cpp does the same). */
    static String[] splitMerge(String line, String where) {
        int space = line.indexOf(' ', 1);
        if (space < 0) {
            throw new IllegalArgumentException(where + " '" + line + "' is not of the form 'left right'");
        }
        return new String[]{line.substring(0, space), line.substring(space + 1)};
    }

    static byte[] byteTokenValue(String piece) {
        if (!BYTE_TOKEN.matcher(piece).matches()) {
            throw new IllegalArgumentException("byte token '" + piece + "' is not of the form <0xNN>");
        }
        return new byte[]{(byte) Integer.parseInt(piece.substring(3, 5), 16)};
    }

    /**
     * A tokenizer from a Hugging Face {@code tokenizer.json} (model type BPE: SentencePiece-style with
     * a {@code ▁} normaliser or Metaspace, or byte-level with Split/ByteLevel pre-tokenizers).
     *
     * @param tokenizerConfigOrNull {@code tokenizer_config.json}, which names BOS/EOS and whether BOS
     *                              is added; without it they come from the post-processor template
     */
    public static Tokenizer fromHuggingFace(Path tokenizerJson, Path tokenizerConfigOrNull) throws IOException {
        return HuggingFaceTokenizerLoader.load(tokenizerJson, tokenizerConfigOrNull);
    }
}
