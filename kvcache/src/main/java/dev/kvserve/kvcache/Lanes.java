package dev.kvserve.kvcache;

/**
 * Per-slot metadata an eviction rule or selector asks the cache to keep next to each token (scores,
 * key norms, hash codes, cluster ids), so that it follows the token through compaction and forks.
 * Lanes live on the heap, outside the pool budget; components report them via their metadataBytes.
 *
 * @param floats float lanes per slot
 * @param ints   int lanes per slot
 */
public record Lanes(int floats, int ints) {

    public static final Lanes NONE = new Lanes(0, 0);

    public Lanes {
        if (floats < 0 || ints < 0) throw new IllegalArgumentException("negative lane count");
    }
}
