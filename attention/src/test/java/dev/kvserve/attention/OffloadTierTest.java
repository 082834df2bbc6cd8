package dev.kvserve.attention;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.BlockLostException;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.tier.TierStats;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Offload tiers change where blocks live, never what attention computes: the same random steps run
 * through an all-primary cache with a large budget and through an offload cache whose primary budget
 * holds about one layer, and every layer's output must agree (bit for bit when blocks come back into
 * the pool; within float rounding when an emulated computational-storage device computes partials).
 */
class OffloadTierTest {

    static final KvGeometry G = new KvGeometry(3, 4, 2, 16, 4096, new RopeConfig(16, 10000f, 1f, false));
    static final int BT = 4;
    static final long BIG = 16 << 20;
    /** fp32: 4 tokens x 16 x (K+V) x 4 B = 512 B per block; 100 tokens = 25 blocks x 2 heads = 25.6 KB per layer. */
    static final long SMALL = 40_000;

    @TempDir
    Path dir;


    @ParameterizedTest
    @ValueSource(strings = {"fp32+offload:host=1MiB", "fp32+offload:host=8KiB,ssd=DIR", "fp32+offload:host=0,ssd=DIR",
            "fp32+offload:host=0,ssd=DIR,prefetch=false", "fp32+offload:host=0,ssd=DIR,csd=true",
            "fp32+offload:host=8KiB,ssd=DIR,csd=true", "int8+offload:host=0,ssd=DIR,csd=true",
            "fp16+offload:host=4KiB,ssd=DIR", "fp32+quest:budget=24,page=4,skip=0+offload:host=0,ssd=DIR",
            "fp32+quest:budget=24,page=4,skip=0+offload:host=0,ssd=DIR,csd=true"})
    void anyMixOfTiersEqualsAllPrimary(String specTemplate) {
        int threads = Integer.getInteger("offload.threads", 2);
        String spec = specTemplate.replace("DIR", dir.toString());
        String primarySpec = spec.substring(0, spec.indexOf("+offload"));
        boolean csd = spec.contains("csd=true");
        long small = spec.startsWith("int8") ? SMALL / 3 : spec.startsWith("fp16") ? SMALL / 2 : SMALL;
        try (Harness primary = new Harness(G, BIG, BT, threads, 7); Harness offload = new Harness(G, small, BT, threads, 7)) {
            Harness.Seq a = primary.open(primarySpec);
            Harness.Seq b = offload.open(spec);
            int[] steps = new int[40];
            steps[0] = 48;
            java.util.Arrays.fill(steps, 1, steps.length, 1);
            for (int i = 0; i < steps.length; i++) {
                boolean[] ends = {i == 0};
                Harness.StepResult ra = primary.step(List.of(a), new int[] {steps[i]}, ends, null);
                Harness.StepResult rb = offload.step(List.of(b), new int[] {steps[i]}, ends, null);
                for (int l = 0; l < G.layers(); l++) {
                    if (csd) {
                        assertThat(Harness.maxAbsDiff(rb.paged()[l], ra.paged()[l])).as("step %d layer %d", i, l).isLessThan(2e-5);
                    } else {
                        // same bytes in the same order, and kernels that sum in a fixed order (LaneSum): bit for bit
                        assertThat(Harness.maxAbsDiff(rb.paged()[l], ra.paged()[l])).as("step %d layer %d", i, l).isZero();
                    }
                }
            }
            // the context really did not fit: blocks went down and the pool stayed within its budget
            TierStats t = offload.manager.tierStats();
            assertThat(t.blocksDown()).isPositive();
            assertThat(b.cache.bytesOffloaded()).isPositive();
            assertThat(offload.manager.stats().bytesUsed()).isLessThanOrEqualTo(small);
            if (spec.contains("ssd=")) assertThat(t.ssdFileBytes()).isPositive();
            if (csd) assertThat(t.csdBlocks()).isPositive();
            if (spec.contains("ssd=") && !csd && !spec.contains("prefetch=false") && !spec.contains("quest")) assertThat(t.prefetchIssued()).isPositive();
            if (spec.contains("prefetch=false")) assertThat(t.prefetchHits() + t.prefetchLate()).isZero();
        }
        assertThat(dir).isEmptyDirectory();
    }

    @ParameterizedTest
    @ValueSource(strings = {"offload:host=64KiB", "offload:host=0,ssd=DIR", "offload:host=2KiB,ssd=DIR,csd=true"})
    void swapOutAndInResumesWithIdenticalOutputs(String tierTemplate) {
        String tier = tierTemplate.replace("DIR", dir.toString());
        try (Harness primary = new Harness(G, BIG, BT, 1, 11); Harness offload = new Harness(G, BIG, BT, 1, 11)) {
            Harness.Seq a = primary.open("fp16");
            Harness.Seq b = offload.open("fp16+" + tier);
            primary.step(List.of(a), new int[] {30}, new boolean[] {true}, null);
            offload.step(List.of(b), new int[] {30}, new boolean[] {true}, null);
            long held = b.cache.bytesHeld();
            offload.manager.swapOut(b.cache);
            assertThat(b.cache.bytesHeld()).isZero();
            assertThat(b.cache.bytesOffloaded()).isEqualTo(held);
            assertThat(offload.manager.stats().bytesUsed()).isZero();
            offload.manager.swapIn(b.cache);
            assertThat(b.cache.bytesHeld()).isEqualTo(held);
            for (int i = 0; i < 6; i++) {
                Harness.StepResult ra = primary.step(a, 1);
                Harness.StepResult rb = offload.step(b, 1);
                for (int l = 0; l < G.layers(); l++) assertThat(rb.paged()[l]).isEqualTo(ra.paged()[l]);
                if (i == 2) {
                    offload.manager.swapOut(b.cache);
                    offload.manager.swapIn(b.cache);
                }
            }
        }
        assertThat(dir).isEmptyDirectory();
    }

    @Test
    void swapOutWithoutOffloadTierIsRefused() {
        try (Harness h = new Harness(G, BIG, BT, 1, 1)) {
            Harness.Seq s = h.open("fp32");
            h.step(s, 3);
            assertThatThrownBy(() -> h.manager.swapOut(s.cache)).isInstanceOf(UnsupportedOperationException.class)
                    .hasMessageContaining("offload tier");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"flip", "truncate"})
    void corruptOrTruncatedSsdBlockIsLostNeverUsed(String damage) throws IOException {
        try (Harness h = new Harness(G, BIG, BT, 1, 3)) {
            Harness.Seq s = h.open("fp32+offload:host=0,ssd=" + dir + ",prefetch=false");
            h.step(List.of(s), new int[] {20}, new boolean[] {true}, null);
            h.manager.swapOut(s.cache);
            Path file;
            try (var files = Files.list(dir)) {
                file = files.findFirst().orElseThrow();
            }
            long size = Files.size(file);
            assertThat(size).isPositive();
            try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
                if (damage.equals("flip")) {
                    raf.seek(100);
                    int v = raf.read();
                    raf.seek(100);
                    raf.write(v ^ 0x5a);
                } else {
                    raf.setLength(size / 2);
                }
            }
            assertThatThrownBy(() -> h.manager.swapIn(s.cache)).isInstanceOf(BlockLostException.class)
                    .hasMessageContaining(damage.equals("flip") ? "CRC32C" : "truncated");
            assertThat(h.manager.tierStats().lostBlocks()).isPositive();
            // the lost block stays out of the pool: attention cannot read zeros in its place
            assertThat(s.cache.bytesOffloaded()).isPositive();
            s.cache.close();
            assertThat(Files.size(file)).as("file emptied when its last block is freed").isZero();
        }
        assertThat(dir).isEmptyDirectory();
    }

    @Test
    void specParsesAndPrintsCanonically() {
        KvCachePolicy p = KvCachePolicy.parse("int4+offload:host=2GiB,ssd=" + dir + ",ssd_budget=20GiB");
        assertThat(p.toString()).contains("offload:host=2GiB,ssd=" + dir + ",ssd_budget=20GiB,resident=0,prefetch=true");
        assertThat(KvCachePolicy.parse(p.toString())).isEqualTo(p);
        assertThatThrownBy(() -> KvCachePolicy.parse("fp32+offload:host=lots")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("host");
        assertThatThrownBy(() -> KvCachePolicy.parse("fp32+offload:host=0")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("ssd");
        assertThatThrownBy(() -> KvCachePolicy.parse("fp32+offload:host=1MiB,csd=true")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("csd=true needs");
    }
}
