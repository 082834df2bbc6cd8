package dev.kvserve.http;

import dev.kvserve.http.HttpMetrics.Refusal;
import dev.kvserve.http.openai.ApiException;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.DecoderResult;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaders;
import io.netty.handler.codec.http.HttpRequest;

import java.util.List;

/**
 * Checks each request head the codec could parse for what the codec lets through: too many header
 * fields (431), and framing that two parsers could read differently (request smuggling): a
 * Transfer-Encoding other than exactly {@code chunked}, Content-Length beside Transfer-Encoding, or a
 * Content-Length that is repeated or not a plain number (400). The codec, configured as RFC 9112
 * asks, already fails most of these; this is the second, explicit line.
 *
 * A refused head is marked as a decoder failure and passed on, so that {@link ApiHandler} answers it
 * in its turn (after the requests before it on the connection) and then closes the connection.
 */
final class RequestGuard extends ChannelInboundHandlerAdapter {

    /** Header fields per request; nginx and Go have no count limit, Tomcat's default is 100. */
    static final int MAX_HEADER_COUNT = 100;

    /** Why a request was refused before routing; carried as its decoder failure. */
    static final class Refused extends RuntimeException {
        final int status;
        final String code;
        final Refusal reason;

        Refused(int status, String code, Refusal reason, String message) {
            super(message, null, false, false);
            this.status = status;
            this.code = code;
            this.reason = reason;
        }

        ApiException error() {
            return new ApiException(status, "invalid_request_error", null, code, getMessage());
        }
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (msg instanceof HttpRequest request && request.decoderResult().isSuccess()) {
            Refused refused = check(request.headers());
            if (refused != null) request.setDecoderResult(DecoderResult.failure(refused));
        }
        ctx.fireChannelRead(msg);
    }

    static Refused check(HttpHeaders headers) {
        if (headers.size() > MAX_HEADER_COUNT) {
            return new Refused(431, "request_header_fields_too_large", Refusal.HEADERS_TOO_LARGE,
                    "The request has " + headers.size() + " header fields; the limit is " + MAX_HEADER_COUNT);
        }
        List<String> encodings = headers.getAll(HttpHeaderNames.TRANSFER_ENCODING);
        List<String> lengths = headers.getAll(HttpHeaderNames.CONTENT_LENGTH);
        if (!encodings.isEmpty()) {
            if (encodings.size() != 1 || !encodings.getFirst().trim().equalsIgnoreCase("chunked")) {
                return badFraming("Transfer-Encoding must be exactly 'chunked', got '"
                        + ApiException.excerpt(String.join(", ", encodings)) + "'");
            }
            if (!lengths.isEmpty()) return badFraming("Content-Length must not be sent together with Transfer-Encoding");
        }
        if (lengths.size() > 1) return badFraming("Content-Length must be sent once, got " + lengths.size() + " values");
        if (lengths.size() == 1 && !isDigits(lengths.getFirst().trim())) {
            return badFraming("Content-Length must be a non-negative integer, got '" + ApiException.excerpt(lengths.getFirst()) + "'");
        }
        return null;
    }

    private static Refused badFraming(String message) {
        return new Refused(400, "invalid_framing", Refusal.BAD_FRAMING, message);
    }

    private static boolean isDigits(String s) {
        if (s.isEmpty() || s.length() > 18) return false;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') return false;
        }
        return true;
    }
}
