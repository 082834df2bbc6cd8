package dev.kvserve.http;

import dev.kvserve.http.openai.ApiException;
import dev.kvserve.http.openai.ChatRequest;
import dev.kvserve.http.openai.CompletionRequest;
import dev.kvserve.http.openai.OpenAiFormat.Envelope;
import dev.kvserve.http.openai.SamplingOptions;
import dev.kvserve.scheduler.GenerationRequest;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * Turns a parsed request into the generations to run: checks the model name and KV policy, renders
 * and tokenizes prompts, holds every prompt to the context limit, and builds one
 * {@link GenerationRequest} per choice. Runs off the event loop (templates and tokenizers take time).
 */
final class CallPlanner {

    /** Everything a {@link CompletionCall} needs besides its connection. */
    record Plan(CompletionCall.Api api, Envelope envelope, boolean stream, boolean includeUsage, boolean wantLogprobs,
                int promptTokens, List<CompletionCall.Choice> choices) {}

    private static final SecureRandom IDS = new SecureRandom();

    private final ServerState server;

    CallPlanner(ServerState server) {
        this.server = server;
    }

    Plan chat(byte[] body) {
        ChatRequest request = ChatRequest.parse(body);
        SamplingOptions o = request.options();
        String kvPolicy = checkModelAndPolicy(o);
        String prompt = server.chatTemplate.render(request.messages());
        int[] tokens = server.backend.tokenize(prompt, !server.chatTemplate.startsWithBos(prompt));
        int maxTokens = fitToContext(tokens.length, o.maxTokens(), "messages", request.maxTokensParam());
        int logprobs = request.logprobs() ? (request.topLogprobs() > 0 ? request.topLogprobs() : -1) : 0;
        List<CompletionCall.Choice> choices = new ArrayList<>();
        for (int i = 0; i < o.n(); i++) {
            choices.add(new CompletionCall.Choice(i, generation(tokens, o, kvPolicy, maxTokens, logprobs, i), null));
        }
        return new Plan(CompletionCall.Api.CHAT, envelope("chatcmpl-"), o.stream(), o.includeUsage(), request.logprobs(),
                tokens.length, choices);
    }

    Plan completion(byte[] body) {
        CompletionRequest request = CompletionRequest.parse(body);
        SamplingOptions o = request.options();
        String kvPolicy = checkModelAndPolicy(o);
        int logprobs = request.logprobs() == null ? 0 : request.logprobs() == 0 ? -1 : request.logprobs();
        List<CompletionCall.Choice> choices = new ArrayList<>();
        int promptTokens = 0;
        int index = 0;
        for (int p = 0; p < request.prompts().size(); p++) {
            CompletionRequest.Prompt prompt = request.prompts().get(p);
            int[] tokens = prompt.tokens() != null ? checkTokenIds(prompt.tokens()) : server.backend.tokenize(prompt.text(), true);
            if (tokens.length == 0) throw ApiException.invalid("prompt", "the prompt has no tokens");
            int maxTokens = fitToContext(tokens.length, o.maxTokens(), "prompt", "max_tokens");
            String echo = !request.echo() ? null : prompt.text() != null ? prompt.text() : decode(tokens);
            promptTokens += tokens.length;
            for (int i = 0; i < o.n(); i++) {
                choices.add(new CompletionCall.Choice(index++, generation(tokens, o, kvPolicy, maxTokens, logprobs, i), echo));
            }
        }
        return new Plan(CompletionCall.Api.TEXT, envelope("cmpl-"), o.stream(), o.includeUsage(), request.logprobs() != null,
                promptTokens, choices);
    }

    /** Checks the model name; returns the KV policy spec to run (null: the server's default). */
    private String checkModelAndPolicy(SamplingOptions o) {
        if (o.model() != null && !o.model().equals(server.model.id())) throw ApiException.modelNotFound(o.model());
        if (o.kvPolicy() == null) return null;
        try {
            return server.backend.resolveKvPolicy(o.kvPolicy());
        } catch (IllegalArgumentException e) {
            // The parser quotes the spec it was given; a client gets back at most a short prefix of it.
            String why = String.valueOf(e.getMessage()).replace(o.kvPolicy(), ApiException.excerpt(o.kvPolicy()));
            throw ApiException.invalid("kv_policy", "invalid kv_policy '" + ApiException.excerpt(o.kvPolicy()) + "': " + why);
        }
    }

    /**
     * The tokens to generate: what was asked for, or, when nothing was (chat), whatever room the
     * context leaves. A prompt that leaves no room, or a request that asks for more than the room,
     * is refused the way OpenAI refuses it, naming the numbers.
     */
    private int fitToContext(int promptLength, Integer requested, String what, String maxField) {
        int context = server.model.contextLength();
        if (promptLength >= context) {
            throw ApiException.invalid(what, "context_length_exceeded", "This model's maximum context length is " + context
                    + " tokens. However, your " + what + " resulted in " + promptLength
                    + " tokens, leaving no room for the completion. Please reduce the length of the " + what + ".");
        }
        if (requested == null) return context - promptLength;
        if ((long) promptLength + requested > context) {
            throw ApiException.invalid(maxField, "context_length_exceeded", "This model's maximum context length is " + context
                    + " tokens. However, you requested " + ((long) promptLength + requested) + " tokens (" + promptLength
                    + " in the " + what + ", " + requested + " in the completion). Please reduce the length of the "
                    + what + " or the completion.");
        }
        return requested;
    }

    private int[] checkTokenIds(int[] tokens) {
        int vocab = server.model.vocabSize();
        for (int i = 0; i < tokens.length; i++) {
            if (tokens[i] >= vocab) {
                throw ApiException.invalid("prompt", "token id " + tokens[i] + " at position " + i
                        + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        return tokens;
    }

    private String decode(int[] tokens) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        for (int t : tokens) bytes.writeBytes(server.backend.tokenBytes(t));
        return bytes.toString(StandardCharsets.UTF_8);
    }

    private static GenerationRequest generation(int[] tokens, SamplingOptions o, String kvPolicy, int maxTokens, int logprobs,
                                                int choice) {
        GenerationRequest.Builder b = GenerationRequest.builder(tokens)
                .maxTokens(maxTokens)
                .temperature((float) o.temperature())
                .topK(o.topK())
                .topP((float) o.topP())
                .minP((float) o.minP())
                .repetitionPenalty((float) o.repetitionPenalty())
                .presencePenalty((float) o.presencePenalty())
                .frequencyPenalty((float) o.frequencyPenalty())
                .stop(o.stop())
                .logprobs(logprobs)
                .ignoreEos(o.ignoreEos());
        // n choices from one seed must differ, yet stay reproducible.
        if (o.seed() != null) b.seed(o.seed() + choice);
        if (kvPolicy != null) b.kvPolicy(kvPolicy);
        return b.build();
    }

    private Envelope envelope(String prefix) {
        byte[] random = new byte[12];
        IDS.nextBytes(random);
        return new Envelope(prefix + HexFormat.of().formatHex(random), System.currentTimeMillis() / 1000,
                server.model.id(), server.systemFingerprint);
    }
}
