package dev.kvserve.runtime.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/** Reads Hugging Face {@code tokenizer.json} (+ optional {@code tokenizer_config.json}) into a {@link BpeTokenizer}. */
final class HuggingFaceTokenizerLoader {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern BYTE_TOKEN = Pattern.compile("<0x[0-9A-F]{2}>");

    private HuggingFaceTokenizerLoader() {
    }

    static Tokenizer load(Path tokenizerJson, Path tokenizerConfig) throws IOException {
        if (tokenizerJson == null) {
            throw new IllegalArgumentException("tokenizer.json path is null");
        }
        JsonNode root = readJson(tokenizerJson);
        JsonNode config = tokenizerConfig == null ? null : readJson(tokenizerConfig);
        try {
            return build(root, config);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(tokenizerJson + ": " + e.getMessage(), e);
        }
    }

    private static JsonNode readJson(Path path) throws IOException {
        if (!Files.isRegularFile(path)) {
            throw new IOException("tokenizer file " + path + " does not exist");
        }
        try {
            return JSON.readTree(path.toFile());
        } catch (IOException e) {
            throw new IOException(path + " is not valid JSON: " + e.getMessage(), e);
        }
    }

    private static Tokenizer build(JsonNode root, JsonNode config) {
        JsonNode model = root.path("model");
        if (!model.isObject()) {
            throw new IllegalArgumentException("no 'model' object");
        }
        String modelType = model.path("type").asText("BPE");
        if (!modelType.equals("BPE")) {
            throw new IllegalArgumentException("tokenizer model type '" + modelType + "' is not supported (only BPE)");
        }
        for (String unsupported : List.of("continuing_subword_prefix", "end_of_word_suffix")) {
            if (!model.path(unsupported).asText("").isEmpty()) {
                throw new IllegalArgumentException("BPE option '" + unsupported + "' is not supported");
            }
        }
        boolean byteFallback = model.path("byte_fallback").asBoolean(false);
        boolean fuseUnknown = model.path("fuse_unk").asBoolean(false);
        boolean ignoreMerges = model.path("ignore_merges").asBoolean(false);
        boolean byteLevel = containsType(root.path("pre_tokenizer"), "ByteLevel") || containsType(root.path("decoder"), "ByteLevel");

        // Ids: model vocabulary plus added tokens; any gap becomes an unused placeholder.
        JsonNode vocabNode = model.path("vocab");
        if (!vocabNode.isObject()) {
            throw new IllegalArgumentException("model.vocab is not an object");
        }
        int size = 0;
        for (Iterator<Map.Entry<String, JsonNode>> it = vocabNode.fields(); it.hasNext(); ) {
            size = Math.max(size, checkedId(it.next().getValue(), "model.vocab") + 1);
        }
        JsonNode added = root.path("added_tokens");
        for (JsonNode token : added) {
            size = Math.max(size, checkedId(token.path("id"), "added_tokens") + 1);
        }
        String[] pieces = new String[size];
        TokenType[] types = new TokenType[size];
        boolean[] addedToken = new boolean[size];
        for (Iterator<Map.Entry<String, JsonNode>> it = vocabNode.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> entry = it.next();
            int id = entry.getValue().asInt();
            pieces[id] = entry.getKey();
            types[id] = byteFallback && BYTE_TOKEN.matcher(entry.getKey()).matches() ? TokenType.BYTE : TokenType.NORMAL;
        }
        String unkText = model.path("unk_token").isTextual() ? model.path("unk_token").asText() : null;
        for (JsonNode token : added) {
            int id = token.path("id").asInt();
            String content = token.path("content").asText(null);
            if (content == null) {
                throw new IllegalArgumentException("added token " + id + " has no content");
            }
            pieces[id] = content;
            addedToken[id] = true;
            types[id] = content.equals(unkText) ? TokenType.UNKNOWN
                    : token.path("special").asBoolean(false) ? TokenType.CONTROL : TokenType.USER_DEFINED;
        }
        for (int id = 0; id < size; id++) {
            if (pieces[id] == null) {
                pieces[id] = "<kvserve_unused_" + id + ">";
                types[id] = TokenType.UNUSED;
            }
        }
        Map<String, Integer> firstId = new java.util.HashMap<>();
        for (int id = size - 1; id >= 0; id--) {
            firstId.put(pieces[id], id);
        }
        int unk = unkText == null ? -1 : firstId.getOrDefault(unkText, -1);
        if (unkText != null && unk < 0) {
            throw new IllegalArgumentException("model.unk_token '" + unkText + "' is not in the vocabulary");
        }
        if (unk >= 0 && types[unk] == TokenType.NORMAL) {
            types[unk] = TokenType.UNKNOWN;
        }

        boolean stripLeadingSpace = decoderStripsLeadingSpace(root.path("decoder"));
        byte[][] bytes = new byte[size][];
        for (int id = 0; id < size; id++) {
            if (addedToken[id] || types[id] == TokenType.UNUSED) {
                bytes[id] = pieces[id].getBytes(StandardCharsets.UTF_8);
            } else if (types[id] == TokenType.BYTE) {
                bytes[id] = Tokenizers.byteTokenValue(pieces[id]);
            } else if (byteLevel) {
                bytes[id] = ByteLevel.decode(pieces[id]);
            } else {
                bytes[id] = pieces[id].replace('\u2581', ' ').getBytes(StandardCharsets.UTF_8);
            }
        }

        SpecialIds specials = specialIds(root, config, firstId);
        Vocabulary vocab = new Vocabulary(pieces, types, bytes, specials.bos, specials.eos, unk, specials.addBos);

        List<String[]> pairs = new ArrayList<>();
        int index = 0;
        for (JsonNode merge : model.path("merges")) {
            String where = "model.merges[" + index++ + "]";
            if (merge.isTextual()) {
                pairs.add(Tokenizers.splitMerge(merge.asText(), where));
            } else if (merge.isArray() && merge.size() == 2) {
                pairs.add(new String[]{merge.get(0).asText(), merge.get(1).asText()});
            } else {
                throw new IllegalArgumentException(where + " is neither 'left right' nor [left, right]");
            }
        }
        TextPipeline pipeline = new TextPipeline(normalizer(root.path("normalizer")), splitters(root.path("pre_tokenizer")));
        BpeTokenizer.Options options = new BpeTokenizer.Options(byteLevel, byteFallback, fuseUnknown, ignoreMerges, stripLeadingSpace);
        return new BpeTokenizer(vocab, BpeTokenizer.mergeTable(vocab, pairs), pipeline, options);
    }

    private static int checkedId(JsonNode node, String where) {
        if (!node.canConvertToInt() || node.asInt() < 0) {
            throw new IllegalArgumentException(where + " has an invalid token id " + node);
        }
        return node.asInt();
    }

    private record SpecialIds(int bos, int eos, boolean addBos) {
    }

    private static SpecialIds specialIds(JsonNode root, JsonNode config, Map<String, Integer> ids) {
        int templateBos = -1;
        JsonNode template = findType(root.path("post_processor"), "TemplateProcessing");
        if (template != null) {
            JsonNode first = template.path("single").path(0).path("SpecialToken");
            if (first.isObject()) {
                String name = first.path("id").asText();
                JsonNode declared = template.path("special_tokens").path(name).path("ids").path(0);
                templateBos = declared.canConvertToInt() ? declared.asInt() : ids.getOrDefault(name, -1);
            }
        }
        int bos = templateBos;
        int eos = -1;
        boolean addBos = templateBos >= 0;
        if (config != null) {
            String bosText = tokenText(config.path("bos_token"));
            String eosText = tokenText(config.path("eos_token"));
            if (bosText != null) {
                bos = lookup(ids, bosText, "bos_token");
            }
            if (eosText != null) {
                eos = lookup(ids, eosText, "eos_token");
            }
            if (config.path("add_bos_token").isBoolean()) {
                addBos = config.path("add_bos_token").asBoolean();
            }
        }
        if (bos < 0) {
            addBos = false;
        }
        return new SpecialIds(bos, eos, addBos);
    }

    private static int lookup(Map<String, Integer> ids, String text, String what) {
        Integer id = ids.get(text);
        if (id == null) {
            throw new IllegalArgumentException("tokenizer_config " + what + " '" + text + "' is not in the vocabulary");
        }
        return id;
    }

    /** A special token in tokenizer_config is either a string or {"content": ...}. */
    private static String tokenText(JsonNode node) {
        if (node.isTextual()) {
            return node.asText();
        }
        if (node.isObject() && node.path("content").isTextual()) {
            return node.path("content").asText();
        }
        return null;
    }

    private static boolean decoderStripsLeadingSpace(JsonNode decoder) {
        if (decoder.isMissingNode() || decoder.isNull()) {
            return false;
        }
        String type = decoder.path("type").asText();
        return switch (type) {
            case "Sequence" -> {
                for (JsonNode step : decoder.path("decoders")) {
                    if (decoderStripsLeadingSpace(step)) {
                        yield true;
                    }
                }
                yield false;
            }
            case "Strip" -> decoder.path("start").asInt(0) > 0 && decoder.path("content").asText(" ").equals(" ");
            case "Metaspace" -> !decoder.path("prepend_scheme").asText(
                    decoder.path("add_prefix_space").asBoolean(true) ? "always" : "never").equals("never");
            default -> false;
        };
    }

    private static TextPipeline.Normalizer normalizer(JsonNode node) {
        if (node.isMissingNode() || node.isNull()) {
            return TextPipeline.IDENTITY;
        }
        String type = node.path("type").asText();
        return switch (type) {
            case "Sequence" -> {
                List<TextPipeline.Normalizer> steps = new ArrayList<>();
                for (JsonNode step : node.path("normalizers")) {
                    steps.add(normalizer(step));
                }
                yield TextPipeline.sequence(steps);
            }
            case "Prepend" -> TextPipeline.prepend(node.path("prepend").asText());
            case "Replace" -> {
                JsonNode pattern = node.path("pattern");
                String content = node.path("content").asText();
                if (pattern.path("String").isTextual()) {
                    yield TextPipeline.replace(pattern.path("String").asText(), content);
                }
                if (pattern.path("Regex").isTextual()) {
                    yield TextPipeline.replaceRegex(TextPipeline.compile(pattern.path("Regex").asText()), content);
                }
                throw new IllegalArgumentException("Replace normalizer without a String or Regex pattern");
            }
            case "NFC" -> TextPipeline.unicode(java.text.Normalizer.Form.NFC);
            case "NFD" -> TextPipeline.unicode(java.text.Normalizer.Form.NFD);
            case "NFKC" -> TextPipeline.unicode(java.text.Normalizer.Form.NFKC);
            case "NFKD" -> TextPipeline.unicode(java.text.Normalizer.Form.NFKD);
            case "Lowercase" -> TextPipeline.lowercase();
            default -> throw new IllegalArgumentException("normalizer type '" + type + "' is not supported");
        };
    }

    private static List<TextPipeline.Splitter> splitters(JsonNode node) {
        List<TextPipeline.Splitter> result = new ArrayList<>();
        addSplitters(node, result);
        return result;
    }

    private static void addSplitters(JsonNode node, List<TextPipeline.Splitter> out) {
        if (node.isMissingNode() || node.isNull()) {
            return;
        }
        String type = node.path("type").asText();
        switch (type) {
            case "Sequence" -> {
                for (JsonNode step : node.path("pretokenizers")) {
                    addSplitters(step, out);
                }
            }
            case "Split" -> {
                if (node.path("invert").asBoolean(false)) {
                    throw new IllegalArgumentException("Split pre-tokenizer with invert=true is not supported");
                }
                JsonNode pattern = node.path("pattern");
                Pattern regex;
                if (pattern.path("Regex").isTextual()) {
                    regex = TextPipeline.compile(pattern.path("Regex").asText());
                } else if (pattern.path("String").isTextual()) {
                    regex = Pattern.compile(Pattern.quote(pattern.path("String").asText()));
                } else {
                    throw new IllegalArgumentException("Split pre-tokenizer without a String or Regex pattern");
                }
                out.add(TextPipeline.regex(regex, splitBehavior(node.path("behavior").asText("Isolated"))));
            }
            case "ByteLevel" -> out.add(TextPipeline.byteLevel(
                    node.path("add_prefix_space").asBoolean(false), node.path("use_regex").asBoolean(true)));
            case "Digits" -> out.add(TextPipeline.regex(
                    TextPipeline.compile(node.path("individual_digits").asBoolean(false) ? "\\p{N}" : "\\p{N}+"),
                    TextPipeline.SplitBehavior.ISOLATED));
            case "Metaspace" -> {
                String replacement = node.path("replacement").asText("\u2581");
                if (replacement.length() != 1) {
                    throw new IllegalArgumentException("Metaspace replacement '" + replacement + "' is not one character");
                }
                String scheme = node.path("prepend_scheme").asText(
                        node.path("add_prefix_space").asBoolean(true) ? "always" : "never");
                TextPipeline.PrependScheme prepend = switch (scheme) {
                    case "always" -> TextPipeline.PrependScheme.ALWAYS;
                    case "first" -> TextPipeline.PrependScheme.FIRST;
                    case "never" -> TextPipeline.PrependScheme.NEVER;
                    default -> throw new IllegalArgumentException("Metaspace prepend_scheme '" + scheme + "' is unknown");
                };
                out.add(TextPipeline.metaspace(replacement.charAt(0), prepend, node.path("split").asBoolean(true)));
            }
            case "WhitespaceSplit" -> out.add(TextPipeline.regex(TextPipeline.compile("\\s+"), TextPipeline.SplitBehavior.REMOVED));
            default -> throw new IllegalArgumentException("pre-tokenizer type '" + type + "' is not supported");
        }
    }

    private static TextPipeline.SplitBehavior splitBehavior(String name) {
        return switch (name) {
            case "Isolated" -> TextPipeline.SplitBehavior.ISOLATED;
            case "Removed" -> TextPipeline.SplitBehavior.REMOVED;
            case "MergedWithPrevious" -> TextPipeline.SplitBehavior.MERGED_WITH_PREVIOUS;
            case "MergedWithNext" -> TextPipeline.SplitBehavior.MERGED_WITH_NEXT;
            case "Contiguous" -> TextPipeline.SplitBehavior.CONTIGUOUS;
            default -> throw new IllegalArgumentException("Split behavior '" + name + "' is unknown");
        };
    }

    private static boolean containsType(JsonNode node, String type) {
        return findType(node, type) != null;
    }

    /** The node of {@code type}, looking inside Sequence containers. */
    private static JsonNode findType(JsonNode node, String type) {
        if (node == null || node.isMissingNode() || node.isNull()) {
            return null;
        }
        if (type.equals(node.path("type").asText())) {
            return node;
        }
        for (String children : List.of("pretokenizers", "processors", "decoders", "normalizers")) {
            for (JsonNode child : node.path(children)) {
                JsonNode found = findType(child, type);
                if (found != null) {
                    return found;
                }
            }
        }
        return null;
    }
}
