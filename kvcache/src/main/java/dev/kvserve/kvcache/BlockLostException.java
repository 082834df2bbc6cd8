package dev.kvserve.kvcache;

/**
 * A block's bytes could not be brought back from a lower tier: its SSD copy failed its CRC32C check,
 * was truncated, or could not be read. The block is never used. It extends
 * {@link KvBudgetExceededException} so that a scheduler which preempts-and-recomputes on an
 * exhausted budget does the same here: the sequence's cache is no longer whole and must be rebuilt
 * by re-running prefill over its tokens.
 */
public final class BlockLostException extends KvBudgetExceededException {

    public BlockLostException(String what, long bytes) {
        super("KV block lost: " + what + " (the sequence must be recomputed)", bytes, 0);
    }
}
