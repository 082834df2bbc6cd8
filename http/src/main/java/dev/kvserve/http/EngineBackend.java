package dev.kvserve.http;

import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import dev.kvserve.scheduler.Engine;
import dev.kvserve.scheduler.EngineStats;
import dev.kvserve.scheduler.GenerationListener;
import dev.kvserve.scheduler.GenerationRequest;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The server's view of a scheduler {@link Engine}. Closing it closes the engine. */
public final class EngineBackend implements ServingBackend {

    private final Engine engine;
    private final Tokenizer tokenizer;
    private final ModelCard card;

    /**
     * @param modelId what clients call the model (the file name without extension, for instance)
     * @param created Unix seconds to report for it
     */
    public EngineBackend(Engine engine, String modelId, long created) {
        this.engine = engine;
        this.tokenizer = engine.tokenizer();
        this.card = new ModelCard(modelId, created, engine.contextLength(), tokenizer.vocabSize(), engine.chatTemplate(),
                tokenizer.bos() >= 0 ? tokenizer.piece(tokenizer.bos()) : "",
                tokenizer.eos() >= 0 ? tokenizer.piece(tokenizer.eos()) : "",
                engine.defaultKvPolicy());
    }

    /** Names the model after its file ({@code stories260K.gguf} → {@code stories260K}), dated by the file. */
    public static EngineBackend forFile(Engine engine, Path modelFile) {
        String name = modelFile.getFileName().toString();
        int dot = name.lastIndexOf('.');
        String id = Files.isDirectory(modelFile) || dot <= 0 ? name : name.substring(0, dot);
        long created;
        try {
            created = Files.getLastModifiedTime(modelFile).toMillis() / 1000;
        } catch (IOException e) {
            created = System.currentTimeMillis() / 1000;
        }
        return new EngineBackend(engine, id, created);
    }

    public Engine engine() {
        return engine;
    }

    @Override
    public ModelCard model() {
        return card;
    }

    @Override
    public int[] tokenize(String text, boolean addBos) {
        return tokenizer.encode(text, addBos, true);
    }

    @Override
    public byte[] tokenBytes(int token) {
        return tokenizer.tokenBytes(token);
    }

    @Override
    public void checkKvPolicy(String spec) {
        // Syntax and parameter ranges; whether the policy fits this model's head size is checked by
        // the engine at submission, with its own message.
        KvCachePolicy.parse(spec);
    }

    @Override
    public Cancellable submit(GenerationRequest request, GenerationListener listener) {
        return engine.submit(request, listener)::cancel;
    }

    @Override
    public EngineStats stats() {
        return engine.stats();
    }

    @Override
    public void close() {
        engine.close();
    }
}
