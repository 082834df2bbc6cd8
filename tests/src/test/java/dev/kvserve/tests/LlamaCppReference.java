package dev.kvserve.tests;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** A greedy run recorded with llama.cpp: prompt ids, then per step the top-10 (id, logit) pairs. */
record LlamaCppReference(int[] promptTokens, List<int[]> topIds, List<float[]> topLogits, int[] greedyIds, String greedyText) {

    static LlamaCppReference read(Path file) throws IOException {
        int[] prompt = null, greedy = null;
        String text = null;
        List<int[]> ids = new ArrayList<>();
        List<float[]> logits = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            if (line.startsWith("prompt_tokens")) {
                prompt = ints(line.substring(line.indexOf(':') + 1));
            } else if (line.startsWith("greedy_ids")) {
                greedy = ints(line.substring(line.indexOf(':') + 1));
            } else if (line.startsWith("greedy_text:")) {
                text = line.substring("greedy_text: ".length());
            } else if (line.startsWith("step")) {
                String[] parts = line.substring(line.indexOf("top10:") + 6).trim().split(" (?=\\d+:-?[0-9.]+:')");
                int[] stepIds = new int[parts.length];
                float[] stepLogits = new float[parts.length];
                for (int i = 0; i < parts.length; i++) {
                    String[] f = parts[i].split(":", 3);
                    stepIds[i] = Integer.parseInt(f[0]);
                    stepLogits[i] = Float.parseFloat(f[1]);
                }
                ids.add(stepIds);
                logits.add(stepLogits);
            }
        }
        return new LlamaCppReference(prompt, ids, logits, greedy, text);
    }

    private static int[] ints(String s) {
        return Arrays.stream(s.trim().split("\\s+")).mapToInt(Integer::parseInt).toArray();
    }

    /** First step whose two best logits are within {@code margin} (a near tie), or the step count. */
    int firstNearTie(float margin) {
        for (int s = 0; s < topLogits.size(); s++) {
            if (topLogits.get(s)[0] - topLogits.get(s)[1] < margin) return s;
        }
        return topLogits.size();
    }
}
