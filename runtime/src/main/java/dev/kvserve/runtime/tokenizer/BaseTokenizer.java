package dev.kvserve.runtime.tokenizer;

import java.io.ByteArrayOutputStream;
import java.util.Set;

/** Everything but the text-to-ids algorithm: special-token splitting, BOS, decoding, lookups. */
abstract class BaseTokenizer implements Tokenizer {
    protected final Vocabulary vocab;
    /** The model prepends a space (SentencePiece {@code ▁}) that decoding must take away again. */
    private final boolean stripLeadingSpaceOnDecode;

    BaseTokenizer(Vocabulary vocab, boolean stripLeadingSpaceOnDecode) {
        this.vocab = vocab;
        this.stripLeadingSpaceOnDecode = stripLeadingSpaceOnDecode;
    }

    /**
     * Encodes one run of text that holds no special tokens.
     *
     * @param afterSpecial the run starts the input or follows a special token (where SentencePiece
     *                     models put their space prefix)
     * @param atInputStart the run starts the input
     */
    abstract void encodeText(String text, boolean afterSpecial, boolean atInputStart, IntArray out);

    @Override
    public int[] encode(String text, boolean addBos, boolean parseSpecial) {
        if (text == null) {
            throw new IllegalArgumentException("text to encode is null");
        }
        IntArray out = new IntArray(text.length() / 3 + 8);
        if (addBos && vocab.addBos) {
            out.add(vocab.bos);
        }
        SpecialTokenMatcher matcher = parseSpecial ? vocab.allSpecials : vocab.userDefined;
        if (matcher.isEmpty()) {
            if (!text.isEmpty()) {
                encodeText(text, true, true, out);
            }
            return out.toArray();
        }
        boolean afterSpecial = true;
        for (SpecialTokenMatcher.Segment segment : matcher.split(text)) {
            if (segment.tokenId() >= 0) {
                out.add(segment.tokenId());
                afterSpecial = true;
            } else {
                encodeText(text.substring(segment.start(), segment.end()), afterSpecial, segment.start() == 0, out);
                afterSpecial = false;
            }
        }
        return out.toArray();
    }

    @Override
    public String decode(int[] ids) {
        return decode(ids, true);
    }

    @Override
    public String decode(int[] ids, boolean skipSpecial) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream(ids.length * 4);
        for (int id : ids) {
            vocab.checkRange(id);
            if (skipSpecial && vocab.isSpecial(id)) {
                continue;
            }
            bytes.writeBytes(vocab.tokenBytes[id]);
        }
        String text = Utf8.decode(bytes.toByteArray(), bytes.size());
        if (stripLeadingSpaceOnDecode && text.startsWith(" ")) {
            text = text.substring(1);
        }
        return text;
    }

    @Override
    public byte[] tokenBytes(int id) {
        vocab.checkRange(id);
        return vocab.tokenBytes[id].clone();
    }

    @Override
    public String piece(int id) {
        vocab.checkRange(id);
        return vocab.pieces[id];
    }

    @Override
    public int tokenId(String piece) {
        return vocab.id(piece);
    }

    @Override
    public int vocabSize() {
        return vocab.size();
    }

    @Override
    public TokenType tokenType(int id) {
        vocab.checkRange(id);
        return vocab.types[id];
    }

    @Override
    public int bos() {
        return vocab.bos;
    }

    @Override
    public int eos() {
        return vocab.eos;
    }

    @Override
    public boolean addsBos() {
        return vocab.addBos;
    }

    @Override
    public boolean isSpecial(int id) {
        vocab.checkRange(id);
        return vocab.isSpecial(id);
    }

    @Override
    public Set<Integer> endOfGenerationIds() {
        return vocab.endOfGeneration;
    }
}
