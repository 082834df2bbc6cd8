package dev.kvserve.http;

import dev.kvserve.http.openai.ChatTemplate;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.atomic.AtomicInteger;

/** What every connection's handler shares. */
final class ServerState {

    final ServingBackend backend;
    final ModelCard model;
    final ChatTemplate chatTemplate;
    final ServerOptions options;
    final HttpMetrics metrics = new HttpMetrics();
    final ApiKeys apiKeys;
    /** Open connections, refused ones included until they close; over options.maxConnections() new ones get a 503. */
    final AtomicInteger connections = new AtomicInteger();
    /** Requests parsed off the event loop: JSON, chat template, tokenizer and submission. */
    final ExecutorService prep;
    /** Generation requests being answered; shutdown waits for this to empty. */
    final Set<CompletionCall> calls = ConcurrentHashMap.newKeySet();
    final String systemFingerprint;
    volatile boolean draining;
    /** Generation requests received but not yet handed to a call (being parsed and tokenized). */
    private int preparing;

    void preparing() {
        synchronized (calls) {
            preparing++;
        }
    }

    void prepared() {
        synchronized (calls) {
            preparing--;
            calls.notifyAll();
        }
    }

    void callStarted(CompletionCall call) {
        calls.add(call);
    }

    void callEnded(CompletionCall call) {
        if (calls.remove(call)) {
            synchronized (calls) {
                calls.notifyAll();
            }
        }
    }

    /** Waits until no generation request is being prepared or answered, or the deadline passes; true when none is. */
    boolean awaitNoCalls(long deadlineNanos) throws InterruptedException {
        synchronized (calls) {
            while (!calls.isEmpty() || preparing > 0) {
                long leftMillis = java.util.concurrent.TimeUnit.NANOSECONDS.toMillis(deadlineNanos - System.nanoTime());
                if (leftMillis <= 0) return false;
                calls.wait(leftMillis);
            }
            return true;
        }
    }

    ServerState(ServingBackend backend, ServerOptions options, ExecutorService prep) {
        this.backend = backend;
        this.model = backend.model();
        this.chatTemplate = ChatTemplate.of(model.chatTemplate(), model.bosToken(), model.eosToken());
        this.options = options;
        this.apiKeys = new ApiKeys(options.apiKeys(), options.apiKeyAllEndpoints());
        this.prep = prep;
        this.systemFingerprint = "fp_" + Integer.toHexString((model.id() + "|" + model.defaultKvPolicy()).hashCode());
    }
}
