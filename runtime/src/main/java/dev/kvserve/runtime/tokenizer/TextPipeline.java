package dev.kvserve.runtime.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Normalisation and pre-tokenisation: turns a run of plain text into the words BPE merges within.
 * The steps mirror Hugging Face's normalizers and pre-tokenizers, and llama.cpp's sequential regex
 * splitting ({@code unicode_regex_split}): every step splits each piece further, and text between
 * matches stays a piece of its own.
 */
final class TextPipeline {

    /** Rewrites a run of text before splitting. */
    interface Normalizer {
        String apply(String text, boolean afterSpecial);
    }

    /** Splits one piece into pieces. */
    interface Splitter {
        void split(String piece, boolean firstPieceOfInput, List<String> out);
    }

    enum SplitBehavior { ISOLATED, REMOVED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS }

    /** Where Metaspace puts its {@code ▁} prefix. */
    enum PrependScheme { ALWAYS, FIRST, NEVER }

    /** Regexes use Unicode {@code \s}; {@code \p{L}}/{@code \p{N}} are Unicode general categories. */
    static Pattern compile(String regex) {
        return Pattern.compile(regex, Pattern.UNICODE_CHARACTER_CLASS);
    }

    static final Normalizer IDENTITY = (text, afterSpecial) -> text;

    private final Normalizer normalizer;
    private final List<Splitter> splitters;

    TextPipeline(Normalizer normalizer, List<Splitter> splitters) {
        this.normalizer = normalizer;
        this.splitters = List.copyOf(splitters);
    }

    List<String> words(String text, boolean afterSpecial, boolean atInputStart) {
        List<String> pieces = new ArrayList<>();
        String normalized = normalizer.apply(text, afterSpecial);
        if (normalized.isEmpty()) {
            return pieces;
        }
        pieces.add(normalized);
        for (Splitter splitter : splitters) {
            List<String> next = new ArrayList<>(pieces.size() * 4);
            for (int i = 0; i < pieces.size(); i++) {
                splitter.split(pieces.get(i), atInputStart && i == 0, next);
            }
            pieces = next;
        }
        return pieces;
    }

    // ---- normalizers ----

    static Normalizer sequence(List<Normalizer> steps) {
        return (text, afterSpecial) -> {
            String result = text;
            for (Normalizer step : steps) {
                result = step.apply(result, afterSpecial);
            }
            return result;
        };
    }

    /**
     * Prepends {@code prefix} to a run that starts the input or follows a special token, like
     * llama.cpp's add_space_prefix (Hugging Face normalises before finding normalised added tokens,
     * which leaves a lone {@code ▁} in front of a special token; llama.cpp's rule is used instead).
     */
    static Normalizer prepend(String prefix) {
        return (text, afterSpecial) -> afterSpecial && !text.isEmpty() ? prefix + text : text;
    }

    static Normalizer replace(String target, String replacement) {
        return (text, afterSpecial) -> text.replace(target, replacement);
    }

    static Normalizer replaceRegex(Pattern pattern, String replacement) {
        String literal = Matcher.quoteReplacement(replacement);
        return (text, afterSpecial) -> pattern.matcher(text).replaceAll(literal);
    }

    static Normalizer unicode(java.text.Normalizer.Form form) {
        return (text, afterSpecial) -> java.text.Normalizer.normalize(text, form);
    }

    static Normalizer lowercase() {
        return (text, afterSpecial) -> text.toLowerCase(Locale.ROOT);
    }

    // ---- splitters ----

    static Splitter regex(Pattern pattern, SplitBehavior behavior) {
        return (piece, first, out) -> splitByRegex(pattern, behavior, piece, out);
    }

    /** ByteLevel pre-tokenizer: optional leading space, then GPT-2's regex when {@code useRegex}. */
    static Splitter byteLevel(boolean addPrefixSpace, boolean useRegex) {
        Pattern gpt2 = compile(PreTokenizerRegexes.GPT2_HF_REGEX);
        return (piece, first, out) -> {
            String text = addPrefixSpace && !piece.startsWith(" ") ? " " + piece : piece;
            if (useRegex) {
                splitByRegex(gpt2, SplitBehavior.ISOLATED, text, out);
            } else {
                out.add(text);
            }
        };
    }

    /** Metaspace pre-tokenizer: spaces become {@code replacement}, optional prefix, optional split before each. */
    static Splitter metaspace(char replacement, PrependScheme scheme, boolean split) {
        String mark = String.valueOf(replacement);
        Pattern boundary = Pattern.compile(Pattern.quote(mark));
        return (piece, first, out) -> {
            String text = piece.replace(' ', replacement);
            boolean prefix = scheme == PrependScheme.ALWAYS || (scheme == PrependScheme.FIRST && first);
            if (prefix && !text.startsWith(mark)) {
                text = mark + text;
            }
            if (split) {
                splitByRegex(boundary, SplitBehavior.MERGED_WITH_NEXT, text, out);
            } else {
                out.add(text);
            }
        };
    }

    static void splitByRegex(Pattern pattern, SplitBehavior behavior, String text, List<String> out) {
        Matcher matcher = pattern.matcher(text);
        int gapStart = 0;
        // For MERGED_WITH_NEXT / CONTIGUOUS: a delimiter waiting to join what follows.
        int carryStart = -1;
        while (matcher.find()) {
            int start = matcher.start();
            int end = matcher.end();
            if (start == end) {
                continue;
            }
            switch (behavior) {
                case ISOLATED -> {
                    addIfNotEmpty(text, gapStart, start, out);
                    out.add(text.substring(start, end));
                }
                case REMOVED -> addIfNotEmpty(text, gapStart, start, out);
                case MERGED_WITH_PREVIOUS -> out.add(text.substring(gapStart, end));
                case MERGED_WITH_NEXT -> {
                    if (carryStart >= 0) {
                        addIfNotEmpty(text, carryStart, start, out);
                    } else {
                        addIfNotEmpty(text, gapStart, start, out);
                    }
                    carryStart = start;
                }
                case CONTIGUOUS -> {
                    if (carryStart >= 0 && gapStart == start) {
                        // Adjacent delimiter: extend the pending run.
                    } else {
                        if (carryStart >= 0) {
                            out.add(text.substring(carryStart, gapStart));
                        }
                        addIfNotEmpty(text, gapStart, start, out);
                        carryStart = start;
                    }
                }
            }
            gapStart = end;
        }
        switch (behavior) {
            case MERGED_WITH_NEXT -> addIfNotEmpty(text, carryStart >= 0 ? carryStart : gapStart, text.length(), out);
            case CONTIGUOUS -> {
                if (carryStart >= 0) {
                    out.add(text.substring(carryStart, gapStart));
                }
                addIfNotEmpty(text, gapStart, text.length(), out);
            }
            default -> addIfNotEmpty(text, gapStart, text.length(), out);
        }
    }

    private static void addIfNotEmpty(String text, int start, int end, List<String> out) {
        if (end > start) {
            out.add(text.substring(start, end));
        }
    }
}
