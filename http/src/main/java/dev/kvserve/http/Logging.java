package dev.kvserve.http;

import java.util.logging.ConsoleHandler;
import java.util.logging.Formatter;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;

/** One line per log record on stderr, {@code 2026-11-25 14:03:07 INFO message}, instead of the JDK's two. */
final class Logging {

    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss");

    private Logging() {}

    /**
     * Writes one line straight to stderr in the same format. For shutdown: the JDK resets logging
     * handlers in its own shutdown hook, concurrently with ours, so records logged then can vanish.
     */
    static void line(String level, String message) {
        System.err.println(LocalDateTime.now().format(TIME) + " " + level + " " + message);
        System.err.flush();
    }

    static void configure() {
        // Jinjava brings slf4j-api without a binding; its three-line warning says nothing useful here.
        System.setProperty("slf4j.internal.verbosity", "ERROR");
        Logger root = Logger.getLogger("");
        for (Handler h : root.getHandlers()) root.removeHandler(h);
        ConsoleHandler console = new ConsoleHandler();
        console.setFormatter(new Formatter() {
            @Override
            public String format(LogRecord r) {
                StringBuilder line = new StringBuilder()
                        .append(LocalDateTime.now().format(TIME)).append(' ')
                        .append(r.getLevel().getName()).append(' ')
                        .append(formatMessage(r)).append(System.lineSeparator());
                if (r.getThrown() != null) {
                    var trace = new java.io.StringWriter();
                    r.getThrown().printStackTrace(new java.io.PrintWriter(trace));
                    line.append(trace);
                }
                return line.toString();
            }
        });
        root.addHandler(console);
    }
}
