package dev.kvserve.http;

import picocli.CommandLine;

/**
 * Runs {@code serve} or {@code bench-serve} without the full {@code kvserve} launcher, e.g.
 * {@code java -cp ... dev.kvserve.http.HttpMain serve --port 8080} or
 * {@code ... HttpMain bench-serve --url http://127.0.0.1:8080 --requests 32}.
 */
public final class HttpMain {

    private HttpMain() {}

    public static void main(String[] args) {
        if (args.length == 0 || !(args[0].equals("serve") || args[0].equals("bench-serve"))) {
            System.err.println("usage: HttpMain serve [options] | HttpMain bench-serve [options]   (--help for options)");
            System.exit(2);
        }
        Object command = args[0].equals("serve") ? new ServeCommand() : new ServeBenchCommand();
        String[] rest = java.util.Arrays.copyOfRange(args, 1, args.length);
        CommandLine cli = new CommandLine(command);
        cli.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            if (ex instanceof IllegalArgumentException || ex instanceof java.io.UncheckedIOException
                    || ex instanceof java.io.IOException) {
                commandLine.getErr().println("kvserve: " + ex.getMessage());
                return 2;
            }
            throw ex;
        });
        System.exit(cli.execute(rest));
    }
}
