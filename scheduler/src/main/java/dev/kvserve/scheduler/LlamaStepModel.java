package dev.kvserve.scheduler;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import java.util.ArrayList;
import java.util.List;

/** {@link StepModel} over the runtime's {@link LlamaModel}; owns the model and its backend. */
final class LlamaStepModel implements StepModel {

    private final LlamaModel model;
    private final Backend backend;

    LlamaStepModel(LlamaModel model, Backend backend) {
        this.model = model;
        this.backend = backend;
    }

    @Override
    public int contextLength() {
        return model.config().contextLength();
    }

    @Override
    public int vocabSize() {
        return model.config().vocabSize();
    }

    @Override
    public KvGeometry kvGeometry() {
        return model.kvGeometry();
    }

    @Override
    public float[][] forward(List<Chunk> chunks) {
        return model.forward(sequenceChunks(chunks));
    }

    /** The model's own step: a fault in one sequence's KV cache fails that chunk alone. */
    @Override
    public Output step(List<Chunk> chunks) {
        LlamaModel.StepResult result = model.step(sequenceChunks(chunks));
        return new Output(result.logits(), result.faults());
    }

    private static List<SequenceChunk> sequenceChunks(List<Chunk> chunks) {
        var sequenceChunks = new ArrayList<SequenceChunk>(chunks.size());
        for (Chunk c : chunks) sequenceChunks.add(new SequenceChunk(c.cache(), c.tokens(), false, c.endsPrompt()));
        return sequenceChunks;
    }

    @Override
    public void close() {
        try {
            model.close();
        } finally {
            backend.close();
        }
    }
}
