package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.LayerKv;
import java.util.Arrays;

/**
 * What the score-based eviction rules share: which tokens are protected (attention sinks, the recent
 * window, the tokens of the current step), and evicting the lowest-scored others of one KV head down
 * to a target count.
 */
final class Retention {

    /** Higher means more worth keeping. */
    interface SlotScore {
        double score(int slot);
    }

    private Retention() {}

    /**
     * Tokens at positions below {@code sinks} or at or above {@code protectFrom} are never evicted.
     *
     * @param sinks       first positions kept (attention sinks)
     * @param protectFrom lowest position of the recent window (and of the current step's tokens)
     */
    record Protection(int sinks, int protectFrom) {
        boolean covers(int position) {
            return position < sinks || position >= protectFrom;
        }

        /** Sinks, a recent window of {@code window} tokens of a {@code length}-token sequence, and every position from {@code stepStart}. */
        static Protection of(int sinks, int window, int length, int stepStart) {
            return new Protection(sinks, Math.min(length - window, stepStart));
        }
    }

    /**
     * Evicts the live, unprotected slots of {@code kvHead} with the lowest score until at most
     * {@code target} tokens remain (protected tokens always stay, so more may remain). Equal scores
     * evict the older token first. Returns the evicted slots, in no particular order.
     */
    static int[] evictDownTo(LayerKv kv, int kvHead, int target, Protection protection, SlotScore score) {
        int[] victims = choose(kv, kvHead, target, protection, score);
        for (int s : victims) kv.evict(kvHead, s);
        return victims;
    }

    /** The slots {@link #evictDownTo} would evict, without evicting them. */
    static int[] choose(LayerKv kv, int kvHead, int target, Protection protection, SlotScore score) {
        int excess = kv.liveTokens(kvHead) - Math.max(0, target);
        if (excess <= 0) return new int[0];
        int n = kv.slots(kvHead);
        int[] cand = new int[n];
        double[] sc = new double[n];
        int[] pos = new int[n];
        int c = 0;
        for (int s = 0; s < n; s++) {
            int p = kv.position(kvHead, s);
            if (p < 0 || protection.covers(p)) continue;
            cand[c] = s;
            sc[c] = score.score(s);
            pos[c] = p;
            c++;
        }
        if (c <= excess) return Arrays.copyOf(cand, c);
        if (excess == 1) {
            int best = 0;
            for (int i = 1; i < c; i++) if (lower(sc, pos, i, best)) best = i;
            return new int[] {cand[best]};
        }
        Integer[] order = new Integer[c];
        for (int i = 0; i < c; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> lower(sc, pos, a, b) ? -1 : lower(sc, pos, b, a) ? 1 : 0);
        int[] out = new int[excess];
        for (int i = 0; i < excess; i++) out[i] = cand[order[i]];
        return out;
    }

    private static boolean lower(double[] sc, int[] pos, int a, int b) {
        return sc[a] < sc[b] || (sc[a] == sc[b] && pos[a] < pos[b]);
    }

    /** First slot of {@code kvHead} holding one of the tokens appended at positions >= firstPosition (they are the last slots). */
    static int firstNewSlot(LayerKv kv, int kvHead, int firstPosition) {
        int s = kv.slots(kvHead);
        while (s > 0) {
            int p = kv.position(kvHead, s - 1);
            if (p >= 0 && p < firstPosition) break;
            s--;
        }
        return s;
    }

    /** Upper bound of tokens a head retains under a budget with sinks and a window (admission control). */
    static int maxRetained(Budget budget, int sinks, Budget window, int tokens, int stepTokens) {
        int kept = Math.max(budget.tokensFor(tokens), sinks + window.tokensFor(tokens));
        return Math.min(tokens, kept) + stepTokens;
    }
}
