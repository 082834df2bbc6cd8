package dev.kvserve.http;

import dev.kvserve.runtime.tokenizer.Tokenizer;
import dev.kvserve.scheduler.Engine;
import dev.kvserve.scheduler.EngineHealth;
import dev.kvserve.scheduler.EngineStats;
import dev.kvserve.scheduler.GenerationListener;
import dev.kvserve.scheduler.GenerationRequest;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.logging.Logger;

/** The server's view of a scheduler {@link Engine}. Closing it closes the engine. */
public final class EngineBackend implements ServingBackend {

    private static final Logger LOG = Logger.getLogger(EngineBackend.class.getName());

    private final Engine engine;
    private final Tokenizer tokenizer;
    private final ModelCard card;
    private final KvPolicyGate gate;

    /**
     * @param modelId what clients call the model (the file name without extension, for instance)
     * @param created Unix seconds to report for it
     */
    public EngineBackend(Engine engine, String modelId, long created) {
        this(engine, modelId, created, KvPolicyGate.defaults());
    }

    /** As above, with the operator's rules for the policies requests may ask for. */
    public EngineBackend(Engine engine, String modelId, long created, KvPolicyGate gate) {
        this.engine = engine;
        this.gate = gate;
        this.tokenizer = engine.tokenizer();
        this.card = new ModelCard(modelId, created, engine.contextLength(), tokenizer.vocabSize(), engine.chatTemplate(),
                tokenizer.bos() >= 0 ? tokenizer.piece(tokenizer.bos()) : "",
                tokenizer.eos() >= 0 ? tokenizer.piece(tokenizer.eos()) : "",
                engine.defaultKvPolicy());
    }

    /** Names the model after its file ({@code stories260K.gguf} → {@code stories260K}), dated by the file. */
    public static EngineBackend forFile(Engine engine, Path modelFile) {
        return forFile(engine, modelFile, KvPolicyGate.defaults());
    }

    /** As {@link #forFile(Engine, Path)}, with the operator's KV policy rules. */
    public static EngineBackend forFile(Engine engine, Path modelFile, KvPolicyGate gate) {
        String name = modelFile.getFileName().toString();
        int dot = name.lastIndexOf('.');
        String id = Files.isDirectory(modelFile) || dot <= 0 ? name : name.substring(0, dot);
        long created;
        try {
            created = Files.getLastModifiedTime(modelFile).toMillis() / 1000;
        } catch (IOException e) {
            created = System.currentTimeMillis() / 1000;
        }
        return new EngineBackend(engine, id, created, gate);
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
    public String resolveKvPolicy(String requested) {
        String spec = gate.resolve(requested);
        boolean profile = gate.profiles().containsKey(requested.trim());
        try {
            // Parsed and bound against the model here, so that nothing about it can fail in a step.
            return engine.canonicalKvPolicy(spec);
        } catch (IllegalArgumentException e) {
            if (!profile) throw e;
            // A profile was checked at start-up; its message may name the operator's files.
            LOG.warning("KV profile '" + requested.trim() + "' cannot run: " + e.getMessage());
            throw new IllegalArgumentException("KV profile '" + requested.trim() + "' cannot be used now (the server log says why)");
        }
    }

    public KvPolicyGate kvPolicyGate() {
        return gate;
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
    public EngineHealth health() {
        return engine.health();
    }

    @Override
    public void close() {
        engine.close();
    }
}
