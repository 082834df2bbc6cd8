package dev.kvserve.http.cli;

import java.io.PrintStream;

/**
 * A one-line progress bar on stderr for long work (loading, perplexity, calibration, benchmarks).
 * Redraws at most every 100 ms; when stderr is not a terminal it prints a line every 10%.
 */
public final class ProgressBar implements AutoCloseable {
    private final String label;
    private final long total;
    private final PrintStream out;
    private final boolean tty = System.console() != null;
    private final long startNanos = System.nanoTime();
    private long lastDraw;
    private int lastDecile = -1;
    private String suffix = "";

    public ProgressBar(String label, long total) {
        this(label, total, System.err);
    }

    public ProgressBar(String label, long total, PrintStream out) {
        this.label = label;
        this.total = Math.max(1, total);
        this.out = out;
    }

    /** Sets the text shown after the bar (e.g. a running perplexity). */
    public ProgressBar suffix(String s) {
        this.suffix = s;
        return this;
    }

    public void update(long done) {
        long now = System.nanoTime();
        double frac = Math.min(1.0, (double) done / total);
        if (tty) {
            if (now - lastDraw < 100_000_000L && done < total) return;
            lastDraw = now;
            int width = 30, filled = (int) (frac * width);
            double secs = (now - startNanos) / 1e9;
            String eta = done > 0 && done < total ? String.format(" eta %.0fs", secs / done * (total - done)) : "";
            out.printf("\r%s [%s%s] %d/%d %3.0f%% %.1fs%s %s\u001b[K", label, "#".repeat(filled),
                    " ".repeat(width - filled), done, total, frac * 100, secs, eta, suffix);
        } else {
            int decile = (int) (frac * 10);
            if (decile == lastDecile) return;
            lastDecile = decile;
            out.printf("%s: %d/%d (%.0f%%) %s%n", label, done, total, frac * 100, suffix);
        }
        out.flush();
    }

    @Override
    public void close() {
        if (tty) {
            out.println();
            out.flush();
        }
    }
}
