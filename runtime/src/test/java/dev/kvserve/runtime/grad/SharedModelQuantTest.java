package dev.kvserve.runtime.grad;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.quant.Calibration;
import dev.kvserve.kvcache.quant.CalibrationFile;
import dev.kvserve.kvcache.quant.Calibrator;
import dev.kvserve.kvcache.quant.KvSamples;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.SharedModels;
import dev.kvserve.runtime.eval.Perplexity;
import dev.kvserve.runtime.model.LlamaModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * End to end on stories260K: calibrate every method from the model's own activations and gradients
 * (the first 6 × 256 tokens of the TinyStories text), then measure perplexity with each calibrated
 * KV-cache policy on later, disjoint chunks, against the unquantized cache.
 */
class SharedModelQuantTest {

    @Test
    void calibratedPoliciesKeepPerplexityNearTheFullPrecisionCache(@TempDir Path dir) throws Exception {
        Path path = SharedModels.file("stories260K.gguf");
        Path text = SharedModels.dir().resolveSibling("data").resolve("tinystories_val.txt");
        int seq = 256, calibSeqs = 6, evalChunks = 4;
        Map<String, Double> ppl = new LinkedHashMap<>();
        Map<String, Double> bytes = new LinkedHashMap<>();
        try (Backend backend = new CpuBackend(1);
             LlamaModel m = LlamaModel.load(path, backend, 1);
             ModelFile file = ModelFile.open(path);
             KvCacheManager kvm = new KvCacheManager(m.kvGeometry(), 64L << 20)) {
            int[] tokens = m.tokenizer().encode(Files.readString(text).substring(0, 40_000), true, false);
            assertThat(tokens.length).isGreaterThan(seq * (calibSeqs + evalChunks));
            List<int[]> calib = ModelCalibrator.sequences(tokens, seq, calibSeqs, m.tokenizer().bos());
            LlamaBackprop grad = new LlamaBackprop(GradConfig.of(ModelCalibrator.config(file)), file.tensors());
            KvSamples samples = ModelCalibrator.collect(grad, calib, true, null);
            int[] eval = Arrays.copyOfRange(tokens, seq * calibSeqs, seq * (calibSeqs + evalChunks));

            ppl.put("fp32", Perplexity.compute(m, eval, seq, evalChunks, () -> kvm.open("fp32"), null).ppl());
            bytes.put("fp16", bytesPerToken(m, kvm, "fp16", eval, seq));
            Map<String, String> methods = new LinkedHashMap<>();
            methods.put("kvquant:bits=4", "kvquant|bits=4");
            methods.put("kvquant:bits=2", "kvquant|bits=2");
            methods.put("cq:c=8,bits=1", "cq|c=8,bits=1");
            methods.put("aqua:bits=2", "aqua|bits=2,buffer=16");
            for (Map.Entry<String, String> e : methods.entrySet()) {
                String[] mp = e.getValue().split("\\|");
                Calibration cal = Calibrator.fit(mp[0], mp[1], samples, null);
                Path f = dir.resolve(mp[0] + ppl.size() + ".kvq");
                CalibrationFile.write(f, ModelCalibrator.identity(file), cal);
                String spec = mp[0] + ":calib=" + f;
                ppl.put(e.getKey(), Perplexity.compute(m, eval, seq, evalChunks, () -> kvm.open(spec), null).ppl());
                bytes.put(e.getKey(), bytesPerToken(m, kvm, spec, eval, seq));
            }
        }
        ppl.forEach((k, v) -> System.out.printf("stories260K ppl %-30s %.4f%n", k, v));
        bytes.forEach((k, v) -> System.out.printf("stories260K KV bytes/token (all layers, %d tokens) %-30s %.1f%n", seq, k, v));
        double base = ppl.get("fp32");
        assertThat(base).isBetween(2.0, 8.0);
        assertThat(ppl.get("kvquant:bits=4")).isLessThan(base * 1.06);
        assertThat(ppl.get("kvquant:bits=2")).isLessThan(base * 1.6);
        assertThat(ppl.get("cq:c=8,bits=1")).isLessThan(base * 1.6);
        assertThat(ppl.get("aqua:bits=2")).isLessThan(base * 2.0);
        // Every calibrated policy stores less than the fp16 cache.
        for (String k : methodsOf(bytes)) assertThat(bytes.get(k)).isLessThan(bytes.get("fp16"));
    }

    private static List<String> methodsOf(Map<String, Double> bytes) {
        return bytes.keySet().stream().filter(k -> !k.equals("fp16")).toList();
    }

    /** Pool bytes (blocks + side memory) per token after one prefill of {@code n} tokens, as the cache accounts them. */
    private static double bytesPerToken(LlamaModel m, KvCacheManager kvm, String spec, int[] tokens, int n) {
        try (var cache = kvm.open(spec)) {
            m.forward(List.of(new dev.kvserve.runtime.model.SequenceChunk(cache, Arrays.copyOf(tokens, n), false)));
            return cache.bytesHeld() / (double) n;
        }
    }
}
