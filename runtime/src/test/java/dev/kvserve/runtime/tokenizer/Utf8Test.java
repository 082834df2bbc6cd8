package dev.kvserve.runtime.tokenizer;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.charset.StandardCharsets;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

class Utf8Test {
    /** Mostly valid UTF-8 with random corruption: truncations, stray continuation bytes, bad leads. */
    private static byte[] randomBytes(SplittableRandom random) {
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 200; i++) {
            int[] choices = {'a' + random.nextInt(26), 0xE9, 0x4E00 + random.nextInt(500), 0x1F600 + random.nextInt(50)};
            text.appendCodePoint(choices[random.nextInt(choices.length)]);
        }
        byte[] bytes = text.toString().getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i < 20; i++) {
            bytes[random.nextInt(bytes.length)] = (byte) random.nextInt(256);
        }
        return bytes;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
    void replacementMatchesTheJdkDecoder(int seed) {
        byte[] bytes = randomBytes(new SplittableRandom(seed));
        assertThat(Utf8.decode(bytes, bytes.length)).isEqualTo(new String(bytes, StandardCharsets.UTF_8));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
    void decodingInChunksEqualsDecodingAtOnce(int seed) {
        SplittableRandom random = new SplittableRandom(seed);
        byte[] bytes = randomBytes(random);
        StringBuilder streamed = new StringBuilder();
        byte[] pending = new byte[bytes.length];
        int pendingLength = 0;
        for (int offset = 0; offset < bytes.length; ) {
            int chunk = Math.min(bytes.length - offset, 1 + random.nextInt(4));
            System.arraycopy(bytes, offset, pending, pendingLength, chunk);
            pendingLength += chunk;
            offset += chunk;
            int consumed = Utf8.decode(pending, pendingLength, false, streamed);
            System.arraycopy(pending, consumed, pending, 0, pendingLength - consumed);
            pendingLength -= consumed;
            assertThat(pendingLength).isLessThanOrEqualTo(3);
        }
        Utf8.decode(pending, pendingLength, true, streamed);
        assertThat(streamed.toString()).isEqualTo(new String(bytes, StandardCharsets.UTF_8));
    }
}
