package dev.kvserve.http.cli;

import java.util.ServiceLoader;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code kvserve} command line: one entry point, a subcommand per job. */
@Command(name = "kvserve", mixinStandardHelpOptions = true, version = "kvserve 0.1.0",
        description = "LLM serving runtime built around a compressed, paged KV cache.",
        subcommands = {dev.kvserve.http.ServeCommand.class, GenerateCommand.class, PerplexityCommand.class, CalibrateCommand.class, SynthCommand.class, CommandLine.HelpCommand.class})
public final class KvServeCli implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new KvServeCli());
        for (CliCommandProvider p : ServiceLoader.load(CliCommandProvider.class)) {
            for (Object command : p.commands()) cli.addSubcommand(command);
        }
        cli.setCaseInsensitiveEnumValuesAllowed(true);
        // Bad input is the user's mistake, not a crash: one line, no stack trace.
        cli.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            if (ex instanceof IllegalArgumentException || ex instanceof java.io.UncheckedIOException
                    || ex instanceof java.io.IOException || ex.getClass().getSimpleName().endsWith("FormatException")) {
                commandLine.getErr().println("kvserve: " + ex.getMessage());
                return 2;
            }
            throw ex;
        });
        return cli;
    }

    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }
}
