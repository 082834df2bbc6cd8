package dev.kvserve.kvcache.select;

import java.util.Arrays;

/**
 * The slots each query head of a step attends to: for query head {@code h}, a strictly increasing
 * array of slot indices of KV head {@code h / groupSize} (as {@link dev.kvserve.kvcache.LayerKv}
 * numbers them during the same step). Attention reads exactly these slots, in place, block by block.
 * Dead slots in the list are ignored.
 */
public final class Selection {

    private final int[][] slotsPerQueryHead;

    private Selection(int[][] slotsPerQueryHead) {
        this.slotsPerQueryHead = slotsPerQueryHead;
    }

    /** One list per query head. Lists are checked to be strictly increasing and non-negative. */
    public static Selection perQueryHead(int[][] slots) {
        int[][] copy = new int[slots.length][];
        for (int h = 0; h < slots.length; h++) copy[h] = checked(slots[h], h);
        return new Selection(copy);
    }

    /** One list per KV head, shared by the {@code groupSize} query heads of its group. */
    public static Selection perKvHead(int[][] slots, int groupSize) {
        int[][] per = new int[slots.length * groupSize][];
        for (int kv = 0; kv < slots.length; kv++) {
            int[] c = checked(slots[kv], kv);
            for (int g = 0; g < groupSize; g++) per[kv * groupSize + g] = c;
        }
        return new Selection(per);
    }

    /** Whole blocks, per KV head: block {@code b} stands for slots b*blockTokens .. +blockTokens-1. */
    public static Selection blocksPerKvHead(int[][] blocks, int blockTokens, int groupSize) {
        int[][] slots = new int[blocks.length][];
        for (int kv = 0; kv < blocks.length; kv++) {
            int[] b = checked(blocks[kv], kv);
            int[] s = new int[b.length * blockTokens];
            for (int i = 0; i < b.length; i++) for (int j = 0; j < blockTokens; j++) s[i * blockTokens + j] = b[i] * blockTokens + j;
            slots[kv] = s;
        }
        return perKvHead(slots, groupSize);
    }

    private static int[] checked(int[] s, int head) {
        int[] c = s.clone();
        for (int i = 0; i < c.length; i++) {
            if (c[i] < 0 || (i > 0 && c[i] <= c[i - 1])) {
                throw new IllegalArgumentException("selection of head " + head + " must be strictly increasing slot indices: "
                        + Arrays.toString(Arrays.copyOf(c, Math.min(c.length, 20))));
            }
        }
        return c;
    }

    public int queryHeads() {
        return slotsPerQueryHead.length;
    }

    /** Slots of query head {@code h}; do not modify. */
    public int[] slots(int queryHead) {
        return slotsPerQueryHead[queryHead];
    }

    /** True when the query heads {@code from..from+count-1} share one array (one read per block). */
    public boolean shared(int from, int count) {
        for (int i = 1; i < count; i++) if (slotsPerQueryHead[from + i] != slotsPerQueryHead[from]) return false;
        return true;
    }
}
