package dev.kvserve.http;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.List;

/**
 * Optional bearer-token check, as OpenAI's API does it: {@code Authorization: Bearer <key>}.
 * Only SHA-256 digests of the keys are kept, and a presented key is compared with every one of them
 * in constant time, so neither the comparison's duration nor a key's length tells anything.
 */
final class ApiKeys {

    private final List<byte[]> digests;
    private final boolean allEndpoints;

    ApiKeys(List<String> keys, boolean allEndpoints) {
        this.digests = keys.stream().map(ApiKeys::sha256).toList();
        this.allEndpoints = allEndpoints;
    }

    /** Whether a request to {@code path} must carry a key: every /v1 path, or every path at all. */
    boolean guards(String path) {
        if (digests.isEmpty()) return false;
        return allEndpoints || path.equals("/v1") || path.startsWith("/v1/");
    }

    /** Null when the Authorization header carries one of the keys, else what is wrong with it (naming no key). */
    String problem(String authorization) {
        if (authorization == null || authorization.isBlank()) {
            return "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    + "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)";
        }
        String value = authorization.trim();
        if (value.length() < 7 || !value.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return "The Authorization header must use Bearer auth (i.e. Authorization: Bearer YOUR_KEY)";
        }
        byte[] presented = sha256(value.substring(7).trim());
        boolean match = false;
        for (byte[] digest : digests) match |= MessageDigest.isEqual(digest, presented);
        return match ? null : "Incorrect API key provided";
    }

    private static byte[] sha256(String key) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(key.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JDK has SHA-256", e);
        }
    }
}
