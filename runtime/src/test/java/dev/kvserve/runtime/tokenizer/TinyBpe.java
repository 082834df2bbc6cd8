package dev.kvserve.runtime.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * A byte-level BPE vocabulary trained in the test (classic most-frequent-pair BPE over Llama 3
 * pre-tokenised words), written out both as GGUF-style metadata and as a Llama 3 style
 * tokenizer.json, plus a deliberately naive reference encoder.
 */
final class TinyBpe {
    static final String LLAMA3_HF_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
            + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    static final List<String> CONTROL = List.of("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>");
    static final String USER_DEFINED = "<tool>";

    final List<String> tokens = new ArrayList<>();
    final List<String[]> merges = new ArrayList<>();
    final Map<String, Integer> ids = new HashMap<>();
    final Map<String, Integer> mergeRank = new HashMap<>();

    TinyBpe(String corpus, int mergeCount) {
        for (int b = 0; b < 256; b++) {
            addToken(String.valueOf(ByteLevel.charOf(b)));
        }
        Map<String, Integer> wordCounts = new LinkedHashMap<>();
        for (String word : PreTokenizerRegexes.PreType.LLAMA3.pipeline().words(corpus, true, true)) {
            wordCounts.merge(ByteLevel.encode(word), 1, Integer::sum);
        }
        // Words as arrays of token ids; pairs counted as (left << 32 | right).
        List<int[]> words = new ArrayList<>();
        List<Integer> counts = new ArrayList<>();
        wordCounts.forEach((word, count) -> {
            words.add(word.chars().map(c -> ids.get(String.valueOf((char) c))).toArray());
            counts.add(count);
        });
        for (int m = 0; m < mergeCount; m++) {
            Map<Long, Integer> pairCounts = new HashMap<>();
            for (int w = 0; w < words.size(); w++) {
                int[] symbols = words.get(w);
                for (int i = 0; i + 1 < symbols.length; i++) {
                    pairCounts.merge(((long) symbols[i] << 32) | symbols[i + 1], counts.get(w), Integer::sum);
                }
            }
            int bestCount = pairCounts.values().stream().mapToInt(Integer::intValue).max().orElse(0);
            if (bestCount < 2) {
                break;
            }
            // Ties go to the lexicographically smallest "left right" text, so training is deterministic.
            long best = -1;
            for (Map.Entry<Long, Integer> e : pairCounts.entrySet()) {
                if (e.getValue() == bestCount && (best < 0 || pairText(e.getKey()).compareTo(pairText(best)) < 0)) {
                    best = e.getKey();
                }
            }
            int left = (int) (best >>> 32);
            int right = (int) best;
            String[] pair = {tokens.get(left), tokens.get(right)};
            mergeRank.put(pair[0] + " " + pair[1], merges.size());
            merges.add(pair);
            addToken(pair[0] + pair[1]);
            int merged = ids.get(pair[0] + pair[1]);
            for (int w = 0; w < words.size(); w++) {
                int[] symbols = words.get(w);
                int length = 0;
                for (int i = 0; i < symbols.length; i++) {
                    if (i + 1 < symbols.length && symbols[i] == left && symbols[i + 1] == right) {
                        symbols[length++] = merged;
                        i++;
                    } else {
                        symbols[length++] = symbols[i];
                    }
                }
                if (length < symbols.length) {
                    words.set(w, java.util.Arrays.copyOf(symbols, length));
                }
            }
        }
        CONTROL.forEach(this::addToken);
        addToken(USER_DEFINED);
    }

    private String pairText(long pair) {
        return tokens.get((int) (pair >>> 32)) + " " + tokens.get((int) pair);
    }

    private void addToken(String token) {
        if (!ids.containsKey(token)) {
            ids.put(token, tokens.size());
            tokens.add(token);
        }
    }

    int id(String token) {
        return ids.get(token);
    }

    Map<String, Object> ggufMetadata() {
        Map<String, Object> md = new HashMap<>();
        md.put("tokenizer.ggml.model", "gpt2");
        md.put("tokenizer.ggml.pre", "llama-bpe");
        md.put("tokenizer.ggml.tokens", tokens.toArray(new String[0]));
        int[] types = new int[tokens.size()];
        for (int i = 0; i < types.length; i++) {
            types[i] = CONTROL.contains(tokens.get(i)) ? 3 : tokens.get(i).equals(USER_DEFINED) ? 4 : 1;
        }
        md.put("tokenizer.ggml.token_type", types);
        md.put("tokenizer.ggml.merges", merges.stream().map(p -> p[0] + " " + p[1]).toList());
        md.put("tokenizer.ggml.bos_token_id", (long) id("<|begin_of_text|>"));
        md.put("tokenizer.ggml.eos_token_id", id("<|end_of_text|>"));
        md.put("tokenizer.ggml.eot_token_id", id("<|eot_id|>"));
        md.put("tokenizer.ggml.add_bos_token", true);
        return md;
    }

    /** A Llama 3 style tokenizer.json: Split(regex) + ByteLevel, TemplateProcessing with BOS. */
    Path writeTokenizerJson(Path dir) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode root = json.createObjectNode();
        root.put("version", "1.0");
        ArrayNode added = root.putArray("added_tokens");
        for (String special : CONTROL) {
            added.addObject().put("id", id(special)).put("content", special).put("single_word", false).put("lstrip", false)
                    .put("rstrip", false).put("normalized", false).put("special", true);
        }
        added.addObject().put("id", id(USER_DEFINED)).put("content", USER_DEFINED).put("single_word", false).put("lstrip", false)
                .put("rstrip", false).put("normalized", false).put("special", false);
        root.putNull("normalizer");
        ObjectNode pre = root.putObject("pre_tokenizer").put("type", "Sequence");
        ArrayNode steps = pre.putArray("pretokenizers");
        ObjectNode split = steps.addObject().put("type", "Split");
        split.putObject("pattern").put("Regex", LLAMA3_HF_REGEX);
        split.put("behavior", "Isolated").put("invert", false);
        steps.addObject().put("type", "ByteLevel").put("add_prefix_space", false).put("trim_offsets", true).put("use_regex", false);
        // As Llama 3 ships it: ByteLevel offsets fix-up, then the BOS template, inside a Sequence.
        ObjectNode processors = root.putObject("post_processor").put("type", "Sequence");
        ArrayNode processorList = processors.putArray("processors");
        processorList.addObject().put("type", "ByteLevel").put("add_prefix_space", true).put("trim_offsets", false).put("use_regex", true);
        ObjectNode post = processorList.addObject().put("type", "TemplateProcessing");
        ArrayNode single = post.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", "<|begin_of_text|>").put("type_id", 0);
        single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        ArrayNode pair = post.putArray("pair");
        pair.add(single.get(0)).add(single.get(1));
        pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
        ObjectNode bos = post.putObject("special_tokens").putObject("<|begin_of_text|>");
        bos.put("id", "<|begin_of_text|>");
        bos.putArray("ids").add(id("<|begin_of_text|>"));
        bos.putArray("tokens").add("<|begin_of_text|>");
        root.putObject("decoder").put("type", "ByteLevel").put("add_prefix_space", true).put("trim_offsets", true).put("use_regex", true);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE").putNull("dropout");
        model.putNull("unk_token");
        model.put("fuse_unk", false).put("byte_fallback", false).put("ignore_merges", true);
        ObjectNode vocab = model.putObject("vocab");
        for (int i = 0; i < tokens.size(); i++) {
            if (!CONTROL.contains(tokens.get(i)) && !tokens.get(i).equals(USER_DEFINED)) {
                vocab.put(tokens.get(i), i);
            }
        }
        ArrayNode mergeList = model.putArray("merges");
        merges.forEach(p -> mergeList.addArray().add(p[0]).add(p[1]));
        Path file = dir.resolve("tokenizer.json");
        json.writerWithDefaultPrettyPrinter().writeValue(file.toFile(), root);
        return file;
    }

    /** Textbook BPE on strings: repeatedly merge the best-ranked adjacent pair, leftmost first. */
    List<Integer> naiveEncode(String text) {
        List<Integer> out = new ArrayList<>();
        for (String word : PreTokenizerRegexes.PreType.LLAMA3.pipeline().words(text, true, true)) {
            String mapped = ByteLevel.encode(word);
            if (ids.containsKey(mapped)) { // ignore_merges
                out.add(ids.get(mapped));
                continue;
            }
            List<String> symbols = new ArrayList<>();
            mapped.chars().forEach(c -> symbols.add(String.valueOf((char) c)));
            while (true) {
                int best = -1;
                int bestRank = Integer.MAX_VALUE;
                for (int i = 0; i + 1 < symbols.size(); i++) {
                    Integer rank = mergeRank.get(symbols.get(i) + " " + symbols.get(i + 1));
                    if (rank != null && rank < bestRank) {
                        best = i;
                        bestRank = rank;
                    }
                }
                if (best < 0) {
                    break;
                }
                symbols.set(best, symbols.get(best) + symbols.remove(best + 1));
            }
            symbols.forEach(s -> out.add(ids.get(s)));
        }
        return out;
    }

    /** Text mixing ASCII words, digits, whitespace runs, accents, Greek, CJK, emoji and combining marks. */
    static String randomText(SplittableRandom random, int length) {
        String[] words = {"the", "little", "girl", "Lily", "don't", "I'm", "park", "happy", "2024", "3.14"};
        int[][] ranges = {{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {0x20, 0x2F}, {0xC0, 0xFF}, {0x391, 0x3C9},
                {0x4E00, 0x4E80}, {0x3040, 0x309F}, {0x1F600, 0x1F64F}, {0x1F300, 0x1F320}, {0x300, 0x36F}};
        StringBuilder text = new StringBuilder();
        while (text.length() < length) {
            switch (random.nextInt(6)) {
                case 0, 1 -> text.append(' ').append(words[random.nextInt(words.length)]);
                case 2 -> text.append(random.nextBoolean() ? "\n" : random.nextBoolean() ? "  " : "\t");
                default -> {
                    int[] range = ranges[random.nextInt(ranges.length)];
                    text.appendCodePoint(range[0] + random.nextInt(range[1] - range[0] + 1));
                }
            }
        }
        return text.toString();
    }
}
