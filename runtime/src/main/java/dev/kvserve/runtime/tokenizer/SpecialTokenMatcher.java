package dev.kvserve.runtime.tokenizer;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Finds special-token texts in input: leftmost match first, longest token at a position wins
 * (Hugging Face's added-vocabulary rule; llama.cpp also tries longer tokens first).
 */
final class SpecialTokenMatcher {
    /** A run of plain text ({@code tokenId == -1}) or one special token, as a range of the input. */
    record Segment(int start, int end, int tokenId) {
    }

    private final String[] pieces;
    /** Candidate ids per first character, longest text first. */
    private final Map<Character, int[]> candidatesByFirstChar = new HashMap<>();

    SpecialTokenMatcher(String[] pieces, int[] tokenIds) {
        this.pieces = pieces;
        Map<Character, List<Integer>> grouped = new HashMap<>();
        for (int id : tokenIds) {
            String text = pieces[id];
            if (!text.isEmpty()) {
                grouped.computeIfAbsent(text.charAt(0), c -> new ArrayList<>()).add(id);
            }
        }
        grouped.forEach((first, ids) -> {
            ids.sort(Comparator.comparingInt((Integer id) -> -pieces[id].length()).thenComparingInt(id -> id));
            candidatesByFirstChar.put(first, ids.stream().mapToInt(Integer::intValue).toArray());
        });
    }

    boolean isEmpty() {
        return candidatesByFirstChar.isEmpty();
    }

    List<Segment> split(String text) {
        List<Segment> segments = new ArrayList<>();
        int plainStart = 0;
        int i = 0;
        while (i < text.length()) {
            int[] candidates = candidatesByFirstChar.get(text.charAt(i));
            int matched = -1;
            if (candidates != null) {
                for (int id : candidates) {
                    if (text.startsWith(pieces[id], i)) {
                        matched = id;
                        break;
                    }
                }
            }
            if (matched < 0) {
                i++;
                continue;
            }
            if (i > plainStart) {
                segments.add(new Segment(plainStart, i, -1));
            }
            int end = i + pieces[matched].length();
            segments.add(new Segment(i, end, matched));
            i = end;
            plainStart = end;
        }
        if (plainStart < text.length()) {
            segments.add(new Segment(plainStart, text.length(), -1));
        }
        return segments;
    }

    @Override
    public String toString() {
        return "SpecialTokenMatcher" + Arrays.toString(candidatesByFirstChar.keySet().toArray());
    }
}
