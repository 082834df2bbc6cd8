package dev.kvserve.kernels.cuda;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.nativ.cuda.EmulatedDevice;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;

/**
 * Decode-step benchmark of the CUDA backend on a Llama-shaped model with random weights: per step,
 * every layer runs rmsnorm, q/k/v matmuls, RoPE, paged-KV writes, paged attention over a context of
 * C tokens per sequence, the output projection, the SwiGLU MLP and residual adds; then the final norm,
 * the LM head and argmax (which waits for the GPU). Each of B sequences decodes one token per step.
 * Reports ms per step, tokens/s and the weight bandwidth it implies. Not a test: run by
 * bench/gpu-check.sh on a GPU machine (or with --device emulator --model tiny as a smoke run).
 *
 * <pre>
 * CudaDecodeBench [--device cuda|emulator] [--model llama3-8b|llama3.2-1b|tiny] [--weights Q4_K,Q8_0]
 *                 [--kv F16,INT8,INT4] [--batch 1,8,32] [--context 512,4096] [--steps 20] [--out file]
 * </pre>
 */
public final class CudaDecodeBench {

    record Model(String name, int dim, int hidden, int layers, int heads, int kvHeads, int headDim, int vocab) {}

    static final List<Model> MODELS = List.of(
            new Model("llama3-8b", 4096, 14336, 32, 32, 8, 128, 128256),
            new Model("llama3.2-1b", 2048, 8192, 16, 32, 8, 64, 128256),
            new Model("tiny", 256, 512, 2, 4, 2, 64, 512));

    public static void main(String[] args) throws IOException {
        String device = "cuda", model = "llama3-8b", weights = "Q4_K,Q8_0", kv = "F16,INT8,INT4";
        String batches = "1,8,32", contexts = "512,4096", out = null;
        int steps = 20;
        for (int i = 0; i < args.length; i++) {
            String v = i + 1 < args.length ? args[i + 1] : "";
            switch (args[i]) {
                case "--device" -> { device = v; i++; }
                case "--model" -> { model = v; i++; }
                case "--weights" -> { weights = v; i++; }
                case "--kv" -> { kv = v; i++; }
                case "--batch" -> { batches = v; i++; }
                case "--context" -> { contexts = v; i++; }
                case "--steps" -> { steps = Integer.parseInt(v); i++; }
                case "--out" -> { out = v; i++; }
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        final String modelName = model;
        Model m = MODELS.stream().filter(x -> x.name().equals(modelName)).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("unknown model " + modelName));
        List<String> lines = new ArrayList<>();
        try (CudaBackend b = open(device)) {
            lines.add("# " + b.name() + ", model " + m + ", " + steps + " timed steps");
            lines.add(String.format(Locale.ROOT, "%-6s %-5s %5s %7s %10s %10s %10s", "weights", "kv", "batch", "context",
                    "ms/step", "tok/s", "weight GB/s"));
            System.out.println(lines.get(0));
            System.out.println(lines.get(1));
            for (String w : weights.split(",")) {
                try (Layers layers = new Layers(b, m, GgmlType.valueOf(w.strip()))) {
                    for (String f : kv.split(",")) {
                        for (int batch : ints(batches)) {
                            for (int ctx : ints(contexts)) {
                                double ms = layers.decode(KvFormat.valueOf(f.strip()), batch, ctx, steps);
                                String line = String.format(Locale.ROOT, "%-7s %-5s %5d %7d %10.3f %10.1f %10.1f", w, f,
                                        batch, ctx, ms, batch * 1000.0 / ms, layers.weightBytes / ms / 1e6);
                                System.out.println(line);
                                lines.add(line);
                            }
                        }
                    }
                }
            }
        }
        if (out != null) Files.write(Path.of(out), lines);
    }

    private static CudaBackend open(String device) {
        if (device.equals("cuda")) return CudaBackend.open();
        StringBuilder reason = new StringBuilder();
        return new CudaBackend(EmulatedDevice.tryOpen(EmulatedDevice.defaultLibrary(), reason)
                .orElseThrow(() -> new IllegalStateException(reason.toString())));
    }

    private static int[] ints(String csv) {
        return Arrays.stream(csv.split(",")).mapToInt(s -> Integer.parseInt(s.strip())).toArray();
    }

    /**
     * The model's weights on the device: one random layer generated on the host and uploaded, then
     * copied on the device into every layer's own buffers, so each layer streams distinct memory.
     */
    private static final class Layers implements AutoCloseable {
        final CudaBackend b;
        final Model m;
        final WeightTensor[][] w;   // [layer][q, k, v, o, gate, up, down]
        final WeightTensor attnNorm, ffnNorm, outNorm, lmHead;
        final long weightBytes;

        Layers(CudaBackend b, Model m, GgmlType type) {
            this.b = b;
            this.m = m;
            Random rnd = new Random(1);
            int qDim = m.heads() * m.headDim(), kvDim = m.kvHeads() * m.headDim();
            try (Arena arena = Arena.ofConfined()) {
                WeightTensor[] host = {
                        GgmlTestData.randomTensor("q", type, m.dim(), qDim, rnd, arena),
                        GgmlTestData.randomTensor("k", type, m.dim(), kvDim, rnd, arena),
                        GgmlTestData.randomTensor("v", type, m.dim(), kvDim, rnd, arena),
                        GgmlTestData.randomTensor("o", type, qDim, m.dim(), rnd, arena),
                        GgmlTestData.randomTensor("gate", type, m.dim(), m.hidden(), rnd, arena),
                        GgmlTestData.randomTensor("up", type, m.dim(), m.hidden(), rnd, arena),
                        GgmlTestData.randomTensor("down", type, m.hidden(), m.dim(), rnd, arena)};
                WeightTensor[] first = new WeightTensor[host.length];
                for (int i = 0; i < host.length; i++) first[i] = b.upload(host[i]);
                w = new WeightTensor[m.layers()][];
                w[0] = first;
                long bytes = 0;
                for (WeightTensor t : first) bytes += t.data().byteSize();
                for (int l = 1; l < m.layers(); l++) {
                    w[l] = new WeightTensor[first.length];
                    for (int i = 0; i < first.length; i++) {
                        MemorySegment d = b.allocate(first[i].data().byteSize());
                        b.copy(first[i].data(), d, d.byteSize());
                        w[l][i] = new WeightTensor(first[i].name(), type, first[i].shape(), d);
                    }
                }
                attnNorm = b.upload(ones("attn_norm", m.dim(), arena));
                ffnNorm = b.upload(ones("ffn_norm", m.dim(), arena));
                outNorm = b.upload(ones("output_norm", m.dim(), arena));
                lmHead = b.upload(GgmlTestData.randomTensor("output", m.dim() % 256 == 0 ? GgmlType.Q6_K : GgmlType.F16,
                        m.dim(), m.vocab(), rnd, arena));
                weightBytes = bytes * m.layers() + lmHead.data().byteSize();
            }
        }

        private static WeightTensor ones(String name, int n, Arena arena) {
            MemorySegment s = arena.allocate(4L * n, 16);
            for (int i = 0; i < n; i++) s.setAtIndex(ValueLayout.JAVA_FLOAT, i, 1f);
            return new WeightTensor(name, GgmlType.F32, new long[] {n}, s);
        }

        /** Mean milliseconds per decode step at steady context {@code ctx}. */
        double decode(KvFormat format, int batch, int ctx, int steps) {
            int blockTokens = 16, maxBlocks = (ctx + blockTokens - 1) / blockTokens;
            PagedKvLayout layout = new PagedKvLayout(format, blockTokens, m.kvHeads(), m.headDim(),
                    Math.min(32, m.headDim()));
            int qDim = m.heads() * m.headDim(), kvDim = m.kvHeads() * m.headDim();
            List<MemorySegment> bufs = new ArrayList<>();
            MemorySegment[] kPool = new MemorySegment[m.layers()], vPool = new MemorySegment[m.layers()];
            for (int l = 0; l < m.layers(); l++) {
                bufs.add(kPool[l] = b.kv().allocatePool(layout, batch * maxBlocks));
                bufs.add(vPool[l] = b.kv().allocatePool(layout, batch * maxBlocks));
            }
            int[] tables = new int[batch * maxBlocks], rowSeq = new int[batch], rowCtx = new int[batch];
            int[] positions = new int[batch], slots = new int[batch];
            for (int s = 0; s < batch; s++) {
                for (int i = 0; i < maxBlocks; i++) tables[s * maxBlocks + i] = s * maxBlocks + i;
                rowSeq[s] = s;
                rowCtx[s] = ctx;
                positions[s] = ctx - 1;
                slots[s] = layout.slot(Arrays.copyOfRange(tables, s * maxBlocks, (s + 1) * maxBlocks), ctx - 1);
            }
            MemorySegment x = alloc(bufs, batch * m.dim()), xb = alloc(bufs, batch * m.dim()), xb2 = alloc(bufs, batch * m.dim());
            MemorySegment q = alloc(bufs, batch * qDim), k = alloc(bufs, batch * kvDim), v = alloc(bufs, batch * kvDim);
            MemorySegment att = alloc(bufs, batch * qDim), hb = alloc(bufs, batch * m.hidden()), hb2 = alloc(bufs, batch * m.hidden());
            MemorySegment logits = alloc(bufs, batch * m.vocab());
            RopeConfig rope = new RopeConfig(m.headDim(), 500000f, 1f, true);
            float scale = (float) (1 / Math.sqrt(m.headDim()));
            Runnable step = () -> {
                for (int l = 0; l < m.layers(); l++) {
                    WeightTensor[] lw = w[l];
                    b.rmsnorm(xb, x, attnNorm, m.dim(), batch, 1e-5f);
                    b.matmul(lw[0], xb, q, batch);
                    b.matmul(lw[1], xb, k, batch);
                    b.matmul(lw[2], xb, v, batch);
                    b.rope(q, positions, m.heads(), m.headDim(), rope, batch);
                    b.rope(k, positions, m.kvHeads(), m.headDim(), rope, batch);
                    b.kv().write(layout, kPool[l], k, slots, batch);
                    b.kv().write(layout, vPool[l], v, slots, batch);
                    b.kv().attention(layout, kPool[l], vPool[l], q, att, m.heads(), batch, tables, maxBlocks, rowSeq,
                            rowCtx, scale);
                    b.matmul(lw[3], att, xb2, batch);
                    b.add(x, xb2, (long) batch * m.dim());
                    b.rmsnorm(xb, x, ffnNorm, m.dim(), batch, 1e-5f);
                    b.matmul(lw[4], xb, hb, batch);
                    b.matmul(lw[5], xb, hb2, batch);
                    b.siluMul(hb, hb2, m.hidden(), batch);
                    b.matmul(lw[6], hb, xb2, batch);
                    b.add(x, xb2, (long) batch * m.dim());
                }
                b.rmsnorm(xb, x, outNorm, m.dim(), batch, 1e-5f);
                b.matmul(lmHead, xb, logits, batch);
                b.argmax(logits, m.vocab(), batch);   // waits for the step, as a decoder would
            };
            try {
                for (int i = 0; i < 3; i++) step.run();
                long t0 = System.nanoTime();
                for (int i = 0; i < steps; i++) step.run();
                return (System.nanoTime() - t0) / 1e6 / steps;
            } finally {
                for (MemorySegment s : bufs) b.free(s);
            }
        }

        private MemorySegment alloc(List<MemorySegment> bufs, long floats) {
            MemorySegment s = b.allocate(4 * floats);
            bufs.add(s);
            return s;
        }

        @Override
        public void close() {
            for (int l = 0; l < m.layers(); l++) for (WeightTensor t : w[l]) b.free(t.data());
            for (WeightTensor t : new WeightTensor[] {attnNorm, ffnNorm, outNorm, lmHead}) b.free(t.data());
        }
    }

    private CudaDecodeBench() {}

}
