package dev.kvserve.bench;

import dev.kvserve.http.cli.CliCommandProvider;
import java.util.List;

/** Contributes {@code kvserve bench} and {@code kvserve kv-eval} to the CLI (see META-INF/services). */
public final class BenchCommands implements CliCommandProvider {
    @Override
    public List<Object> commands() {
        return List.of(new BenchCommand(), new KvEvalCommand());
    }
}
