package dev.kvserve.runtime.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The split regexes llama.cpp uses for each {@code tokenizer.ggml.pre} value (llama-vocab.cpp).
 * llama.cpp writes {@code (?i:'s|...)} out as character classes because std::regex lacks it; Java
 * accepts both, the case-insensitive contractions are kept as llama.cpp spells them.
 */
final class PreTokenizerRegexes {
    /** Llama 3 ({@code llama-bpe}): letters with one leading non-letter, numbers in 1-3 digit groups. */
    static final String LLAMA3_REGEX = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
            + "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    /** Qwen2: as Llama 3 but every digit alone. */
    static final String QWEN2_REGEX = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
            + "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    /** GPT-2 as llama.cpp writes it. */
    static final String GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
    /** GPT-2 as Hugging Face's ByteLevel pre-tokenizer writes it (a final {@code \s+} alternative). */
    static final String GPT2_HF_REGEX = GPT2_REGEX + "|\\s+";

    enum PreType {
        LLAMA3(true, List.of(LLAMA3_REGEX)),
        QWEN2(false, List.of(QWEN2_REGEX)),
        SMOLLM(false, List.of("\\p{N}", GPT2_REGEX)),
        GPT2(false, List.of(GPT2_REGEX)),
        DEFAULT(false, List.of("[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_REGEX, "\\p{N}+", "[0-9][0-9][0-9]"));

        /** llama.cpp's tokenizer_ignore_merges: a word that is itself a token is not merged. */
        final boolean ignoreMerges;
        final List<String> regexes;

        PreType(boolean ignoreMerges, List<String> regexes) {
            this.ignoreMerges = ignoreMerges;
            this.regexes = regexes;
        }

        /** Each regex splits the pieces the previous one left; text between matches stays a piece. */
        TextPipeline pipeline() {
            List<TextPipeline.Splitter> splitters = new ArrayList<>();
            for (String regex : regexes) {
                splitters.add(TextPipeline.regex(TextPipeline.compile(regex), TextPipeline.SplitBehavior.ISOLATED));
            }
            return new TextPipeline(TextPipeline.IDENTITY, splitters);
        }
    }

    private PreTokenizerRegexes() {
    }

    /** Maps a {@code tokenizer.ggml.pre} value (null when absent) to its regexes. */
    static PreType forGgufPre(String pre) {
        if (pre == null) {
            return PreType.DEFAULT;
        }
        return switch (pre.toLowerCase(Locale.ROOT)) {
            case "default" -> PreType.DEFAULT;
            case "llama3", "llama-v3", "llama-bpe", "falcon3" -> PreType.LLAMA3;
            case "qwen2", "deepseek-r1-qwen", "megrez" -> PreType.QWEN2;
            case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b" -> PreType.SMOLLM;
            case "gpt2", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es", "jina-v2-de",
                 "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "trillion" -> PreType.GPT2;
            default -> throw new IllegalArgumentException("unsupported tokenizer.ggml.pre '" + pre
                    + "': supported are default, llama-bpe (llama3, llama-v3, falcon3), qwen2, smollm (starcoder, ...), gpt-2 (gpt2, mpt, olmo, ...)");
        };
    }
}
