package dev.kvserve.scheduler;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.SequenceKv;
import java.util.List;

/**
 * The batched model step the engine loop drives (adapter over the runtime's model): every chunk's
 * tokens are appended to its cache at positions {@code cache.length()} onwards, and the logits of
 * each chunk's last token come back, in chunk order.
 */
interface StepModel extends AutoCloseable {

    /** Longest sequence (prompt + generated) the model supports. */
    int contextLength();

    /** Width of a logits row. */
    int vocabSize();

    /** Shape of the model's KV cache (what an uncompressed fp16 cache would take per token, for stats). */
    KvGeometry kvGeometry();

    /** One step over all chunks; {@code result[i]} is the float[vocabSize()] of chunk i's last token. */
    float[][] forward(List<Chunk> chunks);

    /**
     * One step in which a chunk may fail alone: an exception attributable to one chunk's cache fails
     * that chunk only (its cache half written, not advanced) and the others complete as if it had not
     * been there. An exception thrown out of here fails the whole step. By default nothing is
     * attributable: {@link #forward}.
     */
    default Output step(List<Chunk> chunks) {
        float[][] logits = forward(chunks);
        return new Output(logits, new RuntimeException[logits.length]);
    }

    /** {@code logits[i]} of chunk i, or null when it failed and {@code faults[i]} says why. */
    record Output(float[][] logits, RuntimeException[] faults) {}

    @Override
    void close();

    /** Tokens of one sequence in a step. */
    record Chunk(SequenceKv cache, int[] tokens, boolean endsPrompt) {
        Chunk(SequenceKv cache, int[] tokens) {
            this(cache, tokens, false);
        }
    }
}
