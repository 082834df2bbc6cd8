package dev.kvserve.bench;

import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.regex.Pattern;

/**
 * Needle in a haystack sized for TinyStories models: a sentence naming a character ("Her name was
 * Mia.") is hidden at a relative depth of filler made from real evaluation text, and the prompt ends
 * with a question whose answer the model must complete ("What was her name? Her name was"). A trial
 * is correct when the greedy continuation starts with the name.
 *
 * <p>The names are common TinyStories names, so a model may say one without having read the needle.
 * Filler sentences that mention any of the candidate names are left out, so the needle is the only
 * place the context names one, and every trial is also run without the needle (same filler and
 * question, name drawn the same way): that baseline is what the model's prior alone scores.
 */
public final class NeedleTask {

    public static final List<String> NAMES = List.of("Lily", "Tom", "Ben", "Sue", "Max", "Mia", "Tim", "Anna",
            "Sam", "Lucy", "Jack", "Sara");
    public static final String DEFAULT_NEEDLE = "Her name was %s.";
    public static final String DEFAULT_QUESTION = "What was her name? Her name was";
    /** Greedy tokens generated after the question; enough for any of the names. */
    static final int ANSWER_TOKENS = 6;

    private static final Pattern SENTENCE_END = Pattern.compile("(?<=[.!?])\\s+");

    /**
     * @param prompt      token ids, BOS first
     * @param name        the name the needle gives (also drawn for no-needle trials, to score the prior)
     * @param needleIndex token index where the needle starts (-1 without one)
     */
    public record Trial(int[] prompt, String name, int needleIndex) {}

    /** @param answer decoded greedy continuation */
    public record Outcome(Trial trial, String answer, boolean correct, long bytesHeld, long fp16Bytes, double seconds) {}

    private final Tokenizer tokenizer;
    private final List<String> sentences;
    private final String needle;
    private final String question;

    /**
     * @param filler   text to build haystacks from (sentences mentioning a candidate name are dropped)
     * @param needle   a format with one {@code %s} for the name
     * @param question the prompt's last words; the name should follow them
     */
    public NeedleTask(Tokenizer tokenizer, String filler, String needle, String question) {
        if (!needle.contains("%s")) throw new IllegalArgumentException("needle template '" + needle + "' has no %s for the name");
        this.tokenizer = tokenizer;
        this.needle = needle;
        this.question = question;
        List<String> kept = new ArrayList<>();
        Pattern anyName = Pattern.compile("\\b(" + String.join("|", NAMES) + ")\\b");
        for (String s : SENTENCE_END.split(filler)) {
            String t = s.strip().replaceAll("\\s+", " ");
            if (!t.isEmpty() && !anyName.matcher(t).find()) kept.add(t);
        }
        if (kept.size() < 8) throw new IllegalArgumentException("the filler text has too few usable sentences (" + kept.size() + ")");
        this.sentences = kept;
    }

    /**
     * {@code count} seeded trials of about {@code len} prompt tokens (the largest number of whole
     * filler sentences that fits), the needle after {@code depth} (0..1) of the filler sentences.
     */
    public List<Trial> trials(int len, double depth, int count, long seed, boolean withNeedle) {
        if (depth < 0 || depth > 1) throw new IllegalArgumentException("--depth must be within 0..1, got " + depth);
        if (count < 1) throw new IllegalArgumentException("--trials must be >= 1, got " + count);
        Random rnd = new Random(seed);
        List<Trial> out = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            String name = NAMES.get(rnd.nextInt(NAMES.size()));
            int startSentence = rnd.nextInt(sentences.size());
            out.add(build(len, depth, name, startSentence, withNeedle));
        }
        return out;
    }

    Trial build(int len, double depth, String name, int startSentence, boolean withNeedle) {
        int lo = 0, hi = Math.min(sentences.size(), len); // at least one token per sentence
        if (tokens(0, depth, name, startSentence, withNeedle).length > len) {
            throw new IllegalArgumentException("--len " + len + " is too short to hold the needle and the question");
        }
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (tokens(mid, depth, name, startSentence, withNeedle).length <= len) lo = mid;
            else hi = mid - 1;
        }
        int[] prompt = tokens(lo, depth, name, startSentence, withNeedle);
        int needleIndex = -1;
        if (withNeedle) {
            int before = (int) Math.round(depth * lo);
            // The needle starts where the tokens of the text up to it end (BOS included).
            needleIndex = before == 0 ? (tokenizer.addsBos() ? 1 : 0)
                    : tokenizer.encode(String.join(" ", filler(startSentence, before)), true, false).length;
        }
        return new Trial(prompt, name, needleIndex);
    }

    private int[] tokens(int fillerSentences, double depth, String name, int startSentence, boolean withNeedle) {
        int before = (int) Math.round(depth * fillerSentences);
        List<String> parts = new ArrayList<>(filler(startSentence, fillerSentences));
        if (withNeedle) parts.add(before, String.format(needle, name));
        parts.add(questionFor(name));
        return tokenizer.encode(String.join(" ", parts), true, false);
    }

    /**
     * The question, cut where the answer's first token starts. Sentencepiece-style vocabularies put
     * the space in front of a word ("▁Mia"), so the prompt must end before the space; end-of-word BPE
     * vocabularies (TinyStories-656K's "was▁") put it after, so the prompt must end with it, or the
     * last token is a word fragment the model never saw before a name.
     */
    String questionFor(String name) {
        int[] full = tokenizer.encode(question + " " + name, true, false);
        if (isPrefix(tokenizer.encode(question, true, false), full)) return question;
        if (isPrefix(tokenizer.encode(question + " ", true, false), full)) return question + " ";
        return question;
    }

    private static boolean isPrefix(int[] prefix, int[] of) {
        return prefix.length < of.length && Arrays.equals(prefix, 0, prefix.length, of, 0, prefix.length);
    }

    private List<String> filler(int start, int count) {
        List<String> s = new ArrayList<>(count);
        for (int i = 0; i < count; i++) s.add(sentences.get((start + i) % sentences.size()));
        return s;
    }

    /**
     * Runs one trial: the prompt through the decode path (its first {@code prefill} tokens as one
     * chunk, then one token per step), then greedy decoding of a few tokens.
     */
    public Outcome ask(LlamaModel model, KvCacheManager kvm, KvCachePolicy policy, Trial trial, int prefill) {
        int[] prompt = trial.prompt();
        if (prompt.length + ANSWER_TOKENS > model.config().contextLength()) {
            throw new IllegalArgumentException("a prompt of " + prompt.length + " tokens plus the answer exceeds the model's context "
                    + model.config().contextLength());
        }
        long t0 = System.nanoTime();
        try (PagedSequence seq = kvm.open(policy)) {
            float[] logits = null;
            int fed = 0;
            while (fed < prompt.length) {
                int step = fed == 0 && prefill > 1 ? Math.min(prefill, prompt.length) : 1;
                logits = model.forward(List.of(new SequenceChunk(seq, Arrays.copyOfRange(prompt, fed, fed + step), false)))[0];
                fed += step;
            }
            long held = kvm.stats().bytesUsed();
            long fp16 = kvm.bytesFor(KvCachePolicy.parse("fp16"), seq.length());
            int[] answer = new int[ANSWER_TOKENS];
            int n = 0;
            while (n < ANSWER_TOKENS) {
                int next = argmax(logits);
                if (model.tokenizer().isEndOfGeneration(next)) break;
                answer[n++] = next;
                if (n < ANSWER_TOKENS) logits = model.forward(List.of(new SequenceChunk(seq, new int[] {next}, false)))[0];
            }
            String text = model.tokenizer().decode(Arrays.copyOf(answer, n));
            return new Outcome(trial, text, startsWithName(text, trial.name()), held, fp16, (System.nanoTime() - t0) / 1e9);
        }
    }

    /** True when {@code continuation} begins (after spaces) with {@code name} as a whole word. */
    public static boolean startsWithName(String continuation, String name) {
        String s = continuation.stripLeading();
        if (!s.startsWith(name)) return false;
        return s.length() == name.length() || !Character.isLetterOrDigit(s.charAt(name.length()));
    }

    static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
