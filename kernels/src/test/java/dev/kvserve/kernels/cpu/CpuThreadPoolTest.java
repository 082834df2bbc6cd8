package dev.kvserve.kernels.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Arrays;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;

class CpuThreadPoolTest {

    @Test
    void everyChunkRunsExactlyOnceOverManyCalls() {
        try (CpuThreadPool pool = new CpuThreadPool(3)) {
            for (int call = 0; call < 2000; call++) {
                int chunks = 1 + call % 37;
                AtomicIntegerArray counts = new AtomicIntegerArray(chunks);
                pool.run(counts::incrementAndGet, chunks);
                for (int c = 0; c < chunks; c++) assertThat(counts.get(c)).as("call %d chunk %d", call, c).isEqualTo(1);
            }
        }
    }

    @Test
    void workersAreNamedDaemonThreadsAndShareTheWork() throws Exception {
        try (CpuThreadPool pool = new CpuThreadPool(2)) {
            Set<String> names = ConcurrentHashMap.newKeySet();
            long[] sink = new long[64];
            // Chunks long enough that the worker gets some whatever the scheduling.
            for (int attempt = 0; attempt < 50 && names.size() < 2; attempt++) {
                pool.run(c -> {
                    names.add(Thread.currentThread().getName());
                    long s = 0;
                    for (int i = 0; i < 200_000; i++) s += i ^ c;
                    sink[c] = s;
                }, 64);
            }
            assertThat(names).contains("kvserve-cpu-1");
            Thread worker = Thread.getAllStackTraces().keySet().stream()
                    .filter(t -> t.getName().equals("kvserve-cpu-1")).findFirst().orElseThrow();
            assertThat(worker.isDaemon()).isTrue();
            assertThat(Arrays.stream(sink).allMatch(v -> v != 0)).isTrue();
        }
    }

    @Test
    void aFailingChunkIsRethrownToTheCallerAndThePoolStaysUsable() {
        try (CpuThreadPool pool = new CpuThreadPool(2)) {
            assertThatThrownBy(() -> pool.run(c -> {
                if (c == 13) throw new IllegalArgumentException("chunk 13 failed");
            }, 40)).isInstanceOf(IllegalArgumentException.class).hasMessage("chunk 13 failed");
            AtomicIntegerArray counts = new AtomicIntegerArray(10);
            pool.run(counts::incrementAndGet, 10);
            for (int c = 0; c < 10; c++) assertThat(counts.get(c)).isEqualTo(1);
        }
    }

    @Test
    void badSizesAndClosedPoolsAreRefused() {
        assertThatThrownBy(() -> new CpuThreadPool(0)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("0");
        CpuThreadPool pool = new CpuThreadPool(2);
        pool.close();
        pool.close();
        assertThatThrownBy(() -> pool.run(c -> { }, 4)).isInstanceOf(IllegalStateException.class);
    }
}
