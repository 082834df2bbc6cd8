package dev.kvserve.http;

import java.util.Objects;

/**
 * What clients can learn about the served model.
 *
 * @param id               the name clients put in {@code model} (the file name without extension)
 * @param created          Unix seconds reported by /v1/models
 * @param contextLength    most tokens a sequence may hold, prompt and completion together
 * @param vocabSize        valid token ids are {@code [0, vocabSize)}
 * @param chatTemplate     the model's Jinja chat template, or null
 * @param bosToken         the text of the beginning-of-sequence token ("" when none)
 * @param eosToken         the text of the end-of-sequence token ("" when none)
 * @param defaultKvPolicy  the KV compression policy used when a request names none
 */
public record ModelCard(String id, long created, int contextLength, int vocabSize, String chatTemplate,
                        String bosToken, String eosToken, String defaultKvPolicy) {

    public ModelCard {
        Objects.requireNonNull(id, "id");
        if (contextLength <= 0) throw new IllegalArgumentException("contextLength must be > 0, got " + contextLength);
        if (vocabSize <= 0) throw new IllegalArgumentException("vocabSize must be > 0, got " + vocabSize);
        bosToken = bosToken == null ? "" : bosToken;
        eosToken = eosToken == null ? "" : eosToken;
    }
}
