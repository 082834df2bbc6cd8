package dev.kvserve.runtime.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * Merge-list BPE, in two flavours:
 * <ul>
 * <li>byte-level (GPT-2, Llama 3, Qwen2, SmolLM): every word is mapped byte by byte to GPT-2's
 *     printable characters, so no input is ever unknown;</li>
 * <li>character-level (SentencePiece-style BPE in tokenizer.json, e.g. Llama 2 or TinyStories):
 *     characters missing from the vocabulary fall back to {@code <0xNN>} tokens when
 *     {@code byteFallback} and all their bytes exist, else to the unknown token.</li>
 * </ul>
 * Within a word the pair with the lowest merge rank is merged first, leftmost on ties (Hugging
 * Face's {@code Word::merge_all} and llama.cpp's {@code llm_tokenizer_bpe_session}).
 */
final class BpeTokenizer extends BaseTokenizer {

    /** How text becomes symbols before merging. */
    record Options(boolean byteLevel, boolean byteFallback, boolean fuseUnknown, boolean ignoreMerges,
                   boolean stripLeadingSpaceOnDecode) {
    }

    private final MergeTable merges;
    private final TextPipeline pipeline;
    private final Options options;
    private final PieceIndex pieceIndex;
    /** Byte-level: token id of each byte's character. */
    private final int[] byteCharTokens = new int[256];
    /** Character-level byte fallback: token id of {@code <0xNN>}. */
    private final int[] byteFallbackTokens = new int[256];

    BpeTokenizer(Vocabulary vocab, MergeTable merges, TextPipeline pipeline, Options options) {
        super(vocab, options.stripLeadingSpaceOnDecode());
        this.merges = merges;
        this.pipeline = pipeline;
        this.options = options;
        this.pieceIndex = new PieceIndex(vocab.pieces);
        for (int b = 0; b < 256; b++) {
            byteCharTokens[b] = vocab.id(String.valueOf(ByteLevel.charOf(b)));
            byteFallbackTokens[b] = vocab.id(String.format("<0x%02X>", b));
        }
    }

    /**
     * Builds the merge table from merge lines {@code "left right"} (rank = position). Merges whose
     * parts or result are not tokens are rejected, as Hugging Face does at load time.
     */
    static MergeTable mergeTable(Vocabulary vocab, List<String[]> mergePairs) {
        MergeTable table = new MergeTable(mergePairs.size());
        for (int rank = 0; rank < mergePairs.size(); rank++) {
            String[] pair = mergePairs.get(rank);
            int left = vocab.id(pair[0]);
            int right = vocab.id(pair[1]);
            int merged = vocab.id(pair[0] + pair[1]);
            if (left < 0 || right < 0 || merged < 0) {
                String missing = left < 0 ? pair[0] : right < 0 ? pair[1] : pair[0] + pair[1];
                throw new IllegalArgumentException("merge " + rank + " '" + pair[0] + " " + pair[1]
                        + "' uses '" + missing + "', which is not in the vocabulary");
            }
            table.putIfAbsent(left, right, rank, merged);
        }
        return table;
    }

    @Override
    void encodeText(String text, boolean afterSpecial, boolean atInputStart, IntArray out) {
        for (String word : pipeline.words(text, afterSpecial, atInputStart)) {
            encodeWord(word, out);
        }
    }

    private void encodeWord(String word, IntArray out) {
        String symbolsText = options.byteLevel() ? ByteLevel.encode(word) : word;
        if (options.ignoreMerges()) {
            int whole = vocab.id(symbolsText);
            if (whole >= 0) {
                out.add(whole);
                return;
            }
        }
        IntArray initial = options.byteLevel() ? byteLevelSymbols(word) : characterSymbols(word);
        int count = initial.size();
        int[] ids = new int[count];
        int[] prev = new int[count];
        int[] next = new int[count];
        for (int i = 0; i < count; i++) {
            ids[i] = initial.get(i);
            prev[i] = i - 1;
            next[i] = i + 1 < count ? i + 1 : -1;
        }
        boolean[] removed = new boolean[count];
        LongHeap queue = new LongHeap(count);
        for (int i = 0; i + 1 < count; i++) {
            pushPair(ids, i, i + 1, queue);
        }
        while (!queue.isEmpty()) {
            long key = queue.pop();
            int left = (int) key;
            int right = next[left];
            if (removed[left] || right < 0) {
                continue;
            }
            long merge = merges.get(ids[left], ids[right]);
            // An outdated entry: the pair at this position changed since it was queued.
            if (merge < 0 || (int) (merge >>> 32) != (int) (key >>> 32)) {
                continue;
            }
            ids[left] = (int) merge;
            removed[right] = true;
            next[left] = next[right];
            if (next[right] >= 0) {
                prev[next[right]] = left;
            }
            if (prev[left] >= 0) {
                pushPair(ids, prev[left], left, queue);
            }
            if (next[left] >= 0) {
                pushPair(ids, left, next[left], queue);
            }
        }
        for (int i = 0; i >= 0 && count > 0; i = next[i]) {
            out.add(ids[i]);
        }
    }

    private void pushPair(int[] ids, int left, int right, LongHeap queue) {
        long merge = merges.get(ids[left], ids[right]);
        if (merge >= 0) {
            queue.push((merge & 0xFFFFFFFF00000000L) | left);
        }
    }

    private IntArray byteLevelSymbols(String word) {
        byte[] bytes = word.getBytes(StandardCharsets.UTF_8);
        IntArray symbols = new IntArray(bytes.length);
        for (byte b : bytes) {
            int id = byteCharTokens[b & 0xFF];
            if (id < 0) {
                if (vocab.unk < 0) {
                    throw new IllegalArgumentException(String.format(
                            "byte 0x%02X ('%c') has no token in this byte-level vocabulary and there is no unknown token",
                            b & 0xFF, ByteLevel.charOf(b)));
                }
                id = vocab.unk;
            }
            symbols.add(id);
        }
        return symbols;
    }

    private IntArray characterSymbols(String word) {
        IntArray symbols = new IntArray(word.length());
        boolean previousWasUnknown = false;
        for (int i = 0; i < word.length(); ) {
            int charCount = Character.charCount(word.codePointAt(i));
            int id = pieceIndex.find(word, i, i + charCount);
            if (id >= 0) {
                symbols.add(id);
                previousWasUnknown = false;
                i += charCount;
                continue;
            }
            String character = word.substring(i, i + charCount);
            i += charCount;
            if (options.byteFallback() && appendByteFallback(character, symbols)) {
                previousWasUnknown = false;
                continue;
            }
            if (vocab.unk < 0) {
                throw new IllegalArgumentException("character U+" + Integer.toHexString(character.codePointAt(0)).toUpperCase()
                        + " has no token and the vocabulary has no unknown token");
            }
            if (!(options.fuseUnknown() && previousWasUnknown)) {
                symbols.add(vocab.unk);
            }
            previousWasUnknown = true;
        }
        return symbols;
    }

    private boolean appendByteFallback(String character, IntArray symbols) {
        byte[] bytes = character.getBytes(StandardCharsets.UTF_8);
        for (byte b : bytes) {
            if (byteFallbackTokens[b & 0xFF] < 0) {
                return false;
            }
        }
        for (byte b : bytes) {
            symbols.add(byteFallbackTokens[b & 0xFF]);
        }
        return true;
    }
}
