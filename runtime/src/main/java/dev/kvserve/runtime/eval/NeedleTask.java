package dev.kvserve.runtime.eval;

import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * Needle-in-a-haystack prompts a TinyStories-sized model can answer: a name (the needle) is
 * introduced in one sentence at a chosen depth of a story whose other sentences name nobody, and the
 * story ends with a cue after which the model, if it still sees the needle, goes on to use that name.
 * Retrieval succeeds when the needle appears in the greedy continuation. Everything is derived from
 * the seed: the filler order, the needle's name and its wording.
 *
 * <p>The haystack is built from {@link #FILLER}, sentences in the style of TinyStories that contain
 * no names, so the only name in the prompt is the needle. The needle names are ones these models
 * rarely produce on their own; {@code NeedleEval} measures how often they appear without the needle
 * anyway (its control run) so accuracies can be read against chance.
 */
public final class NeedleTask {

    /** Sentences without names, in the register of TinyStories. */
    public static final List<String> FILLER = List.of(
            "The sun was shining and the sky was blue.",
            "The birds were singing in the tall trees.",
            "There was a big red ball in the garden.",
            "The flowers were pretty and smelled sweet.",
            "A little dog ran across the green grass.",
            "The wind blew softly through the leaves.",
            "The cat slept on a warm and soft bed.",
            "There was a small pond with clear water.",
            "The fish swam around in the pond all day.",
            "Mom made a big cake for everyone.",
            "The cake was yummy and everyone was happy.",
            "They played with the toys in the park.",
            "The car was red and very shiny.",
            "A big tree stood next to the house.",
            "The bunny hopped over the little rocks.",
            "It started to rain, so they went inside.",
            "After the rain, there was a big rainbow.",
            "The rainbow had many bright colors.",
            "Dad read a book about a brave bear.",
            "The bear lived in a cave in the woods.",
            "The duck said quack and jumped in the water.",
            "The children laughed and ran in circles.",
            "There were many boxes in the room.",
            "The box was full of old toys and games.",
            "The moon came out and the stars were bright.",
            "The little bird flew high in the sky.",
            "The frog sat on a big green leaf.",
            "They ate apples and drank cold milk.",
            "The kite went up and up in the wind.",
            "The boat floated on the calm lake.",
            "A butterfly landed on a yellow flower.",
            "The ice cream was cold and sweet.",
            "The train went choo choo down the track.",
            "The puppy wagged its tail and barked.",
            "The snow was white and very cold.",
            "They built a big tower with blocks.",
            "The teddy bear was soft and brown.",
            "The sand on the beach was warm.",
            "The bees buzzed around the flowers.",
            "The lamp made the room bright and warm.");

    /** Names used as needles: short, and rare in these models' unprompted output. */
    public static final List<String> NAMES = List.of("Zoe", "Mia", "Max", "Ben", "Sue", "Sam", "Jack", "Anna", "Lucy", "Tom");

    /**
     * The cue that ends the prompt; %W is "girl" or "boy", %P "She" or "He". Which one a model
     * answers best differs: on 200-token haystacks stories260K retrieves 15/20 with {@link #I_AM}
     * and TinyStories-656K 12/20 with {@link #MY_NAME} (8/20 with I_AM), none without the needle.
     */
    public enum Cue {
        I_AM("Then the little %W said, \"I am"),
        MY_NAME("One day, the little %W went to the park. %P met a friend and said, \"Hi, my name is");

        private final String template;

        Cue(String template) {
            this.template = template;
        }

        String text(String who) {
            return template.replace("%W", who).replace("%P", who.equals("girl") ? "She" : "He");
        }
    }

    /**
     * One prompt.
     *
     * @param haystack       the tokens up to and including the last filler sentence (BOS first)
     * @param question       the cue that follows (no BOS), which makes the model name the character
     * @param needle         the name to retrieve
     * @param needleToken    index in {@code haystack} of the needle sentence's first token
     * @param text           the whole prompt as text
     */
    public record Sample(int[] haystack, int[] question, String needle, int needleToken, String text) {

        /** Haystack followed by the question. */
        public int[] prompt() {
            int[] p = Arrays.copyOf(haystack, haystack.length + question.length);
            System.arraycopy(question, 0, p, haystack.length, question.length);
            return p;
        }
    }

    private NeedleTask() {}

    /**
     * A prompt of about {@code length} tokens (never more) with the needle sentence starting at
     * fraction {@code depth} of the haystack (0 = first sentence, 1 = last).
     *
     * @param withNeedle false builds the same prompt with the needle sentence's name left out (a
     *                   control: how often the model says the name unprompted)
     * @throws IllegalArgumentException when {@code length} is too short for the needle and the cue
     */
    public static Sample generate(Tokenizer tok, int length, double depth, long seed, boolean withNeedle, Cue cue) {
        if (!(depth >= 0 && depth <= 1)) throw new IllegalArgumentException("needle depth must be in [0, 1], got " + depth);
        Random rnd = new Random(seed);
        String name = NAMES.get(rnd.nextInt(NAMES.size()));
        String who = rnd.nextBoolean() ? "girl" : "boy";
        String needle = withNeedle ? "There was a little " + who + " named " + name + "."
                : "There was a little " + who + " who liked to play.";
        // no leading space: the tokenizers' space prefix supplies the one the running text would have
        String question = cue.text(who);
        int[] questionIds = tok.encode(question, false, false);
        int fixed = tok.encode(needle, true, false).length + questionIds.length;
        if (fixed + 8 > length) {
            throw new IllegalArgumentException("--len " + length + " leaves no room for a haystack; the needle and the question take "
                    + fixed + " tokens");
        }
        // filler sentences in a seeded order, repeated as needed, until the token budget is used
        List<String> order = new ArrayList<>(FILLER);
        List<String> sentences = new ArrayList<>();
        int used = fixed;
        while (true) {
            if (sentences.size() % order.size() == 0) java.util.Collections.shuffle(order, rnd);
            String s = order.get(sentences.size() % order.size());
            int n = tok.encode(s, false, false).length;
            if (used + n > length) break;
            sentences.add(s);
            used += n;
        }
        int at = (int) Math.round(depth * sentences.size());
        sentences.add(at, needle);
        String text = String.join(" ", sentences);
        int[] haystack = tok.encode(text, true, false);
        int needleToken = tok.encode(String.join(" ", sentences.subList(0, at)), true, false).length;
        return new Sample(haystack, questionIds, name, needleToken, text + " " + question);
    }

    /** True when {@code answer} contains {@code name} as a word. */
    public static boolean retrieved(String answer, String name) {
        return java.util.regex.Pattern.compile("\\b" + java.util.regex.Pattern.quote(name) + "\\b").matcher(answer).find();
    }
}
