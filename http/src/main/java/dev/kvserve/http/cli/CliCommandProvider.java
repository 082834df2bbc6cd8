package dev.kvserve.http.cli;

import java.util.List;

/**
 * Lets modules that sit above the CLI in the dependency graph (bench/) contribute subcommands
 * without the CLI depending on them: they list picocli command objects in
 * {@code META-INF/services/dev.kvserve.http.cli.CliCommandProvider}.
 */
public interface CliCommandProvider {
    List<Object> commands();
}
