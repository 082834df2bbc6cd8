package dev.kvserve.http.openai;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.TypeConvertingMapELResolver;
import com.hubspot.jinjava.el.ext.JinjavaBeanELResolver;
import com.hubspot.jinjava.el.ext.JinjavaListELResolver;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import dev.kvserve.http.openai.ChatRequest.ChatMessage;
import jinjava.javax.el.ArrayELResolver;
import jinjava.javax.el.CompositeELResolver;
import jinjava.javax.el.ResourceBundleELResolver;

import java.time.Clock;
import java.time.ZonedDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Turns chat messages into the prompt text a model was trained on.
 *
 * <p>When the model ships a {@code tokenizer.chat_template}, it is rendered with Jinjava configured
 * like Hugging Face's environment ({@code trim_blocks}, {@code lstrip_blocks}), with the helpers
 * templates expect: {@code raise_exception(msg)}, {@code strftime_now(fmt)}, {@code bos_token},
 * {@code eos_token}, {@code add_generation_prompt}, plus Python's common string methods
 * ({@code startswith}, {@code strip}, {@code split}, ...).
 *
 * <p>Without a template the fallback is a plain transcript, one {@code "<role>: <content>\n"} line per
 * message, ending with {@code "assistant:"} so the model writes the next turn.
 */
public final class ChatTemplate {

    private static final long MAX_OUTPUT_CHARS = 32L << 20;

    /** Built on first use: Jinjava takes a while to start, and models without a template never need it. */
    private static final class Renderer {
        static final Jinjava JINJAVA = newJinjava();
    }

    // strftime_now is a static function to Jinjava; the clock of the template being rendered on
    // this thread is how a test pins "now".
    private static final ThreadLocal<Clock> RENDER_CLOCK = new ThreadLocal<>();

    private final String source;
    private final String bosToken;
    private final String eosToken;
    private final Clock clock;

    private ChatTemplate(String source, String bosToken, String eosToken, Clock clock) {
        this.source = source;
        this.bosToken = bosToken == null ? "" : bosToken;
        this.eosToken = eosToken == null ? "" : eosToken;
        this.clock = clock;
    }

    /** A template from the model's metadata; a null or blank source gives the fallback format. */
    public static ChatTemplate of(String jinjaSource, String bosToken, String eosToken) {
        return of(jinjaSource, bosToken, eosToken, Clock.systemDefaultZone());
    }

    public static ChatTemplate of(String jinjaSource, String bosToken, String eosToken, Clock clock) {
        return new ChatTemplate(jinjaSource == null || jinjaSource.isBlank() ? null : jinjaSource, bosToken, eosToken, clock);
    }

    public boolean isFallback() {
        return source == null;
    }

    /**
     * The prompt text for these messages, with the assistant's turn opened. A template that raises an
     * exception (e.g. "roles must alternate") is the client's mistake: a 400 carrying its message.
     */
    public String render(List<ChatMessage> messages) {
        if (source == null) return fallback(messages);
        List<Map<String, Object>> turns = new ArrayList<>(messages.size());
        for (ChatMessage m : messages) {
            Map<String, Object> turn = new LinkedHashMap<>();
            // Templates predate the "developer" role; it carries what "system" used to.
            turn.put("role", m.role().equals("developer") ? "system" : m.role());
            turn.put("content", m.content());
            if (m.name() != null) turn.put("name", m.name());
            turns.add(turn);
        }
        Map<String, Object> bindings = new HashMap<>();
        bindings.put("messages", turns);
        bindings.put("add_generation_prompt", true);
        bindings.put("bos_token", bosToken);
        bindings.put("eos_token", eosToken);
        RenderResult result;
        RENDER_CLOCK.set(clock);
        try {
            result = Renderer.JINJAVA.renderForResult(source, bindings);
        } catch (TemplateRaised e) {
            throw ApiException.invalid("messages", "chat template: " + e.getMessage());
        } catch (RuntimeException e) {
            TemplateRaised raised = raisedBy(e);
            if (raised != null) throw ApiException.invalid("messages", "chat template: " + raised.getMessage());
            throw new IllegalStateException("the model's chat template failed: " + e.getMessage(), e);
        } finally {
            RENDER_CLOCK.remove();
        }
        for (TemplateError error : result.getErrors()) {
            if (error.getSeverity() != TemplateError.ErrorType.FATAL) continue;
            TemplateRaised raised = raisedBy(error.getException());
            if (raised != null) throw ApiException.invalid("messages", "chat template: " + raised.getMessage());
            throw new IllegalStateException("the model's chat template failed: " + error.getMessage()
                    + (error.getLineno() > 0 ? " (line " + error.getLineno() + ")" : ""));
        }
        return result.getOutput();
    }

    /** Whether the rendered text already begins with BOS, so tokenization must not add another. */
    public boolean startsWithBos(String rendered) {
        return !bosToken.isEmpty() && rendered.startsWith(bosToken);
    }

    static String fallback(List<ChatMessage> messages) {
        StringBuilder out = new StringBuilder();
        for (ChatMessage m : messages) {
            out.append(m.role()).append(": ").append(m.content()).append('\n');
        }
        return out.append("assistant:").toString();
    }

    private static TemplateRaised raisedBy(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof TemplateRaised r) return r;
        }
        return null;
    }

    // ---- helpers callable from templates (public static: Jinjava binds them reflectively) ----

    /** A template's way to reject a conversation it cannot format. */
    public static String raiseException(String message) {
        throw new TemplateRaised(message);
    }

    /** Python's {@code datetime.now().strftime(fmt)}, which Llama 3.x templates use for the date line. */
    public static String strftimeNow(String format) {
        Clock clock = RENDER_CLOCK.get();
        return Strftime.format(format, ZonedDateTime.now(clock == null ? Clock.systemDefaultZone() : clock));
    }

    static final class TemplateRaised extends RuntimeException {
        TemplateRaised(String message) {
            super(message, null, false, false);
        }
    }

    private static Jinjava newJinjava() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PyStringMethods());
        resolver.add(new ArrayELResolver(true));
        resolver.add(new JinjavaListELResolver(true));
        resolver.add(new TypeConvertingMapELResolver(true));
        resolver.add(new ResourceBundleELResolver());
        resolver.add(new JinjavaBeanELResolver(true));
        JinjavaConfig config = JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                .withLstripBlocks(true)
                .withLocale(Locale.ROOT)
                .withMaxOutputSize(MAX_OUTPUT_CHARS)
                .withElResolver(resolver)
                // Jinja2 semantics where Jinjava's defaults differ: {{- -}} trims around expressions,
                // Python operator precedence, iteration over dict keys, Python-style tojson.
                .withLegacyOverrides(LegacyOverrides.newBuilder()
                        .withEvaluateMapKeys(true)
                        .withIterateOverMapKeys(true)
                        .withUsePyishObjectMapper(true)
                        .withUseNaturalOperatorPrecedence(true)
                        .withParseWhitespaceControlStrictly(true)
                        .withAllowAdjacentTextNodes(true)
                        .withUseTrimmingForNotesAndExpressions(true)
                        .withKeepNullableLoopValues(true)
                        .build())
                .build();
        Jinjava jinjava = new Jinjava(config);
        jinjava.getGlobalContext().registerFunction(
                new ELFunctionDefinition("", "raise_exception", ChatTemplate.class, "raiseException", String.class));
        jinjava.getGlobalContext().registerFunction(
                new ELFunctionDefinition("", "strftime_now", ChatTemplate.class, "strftimeNow", String.class));
        return jinjava;
    }
}
