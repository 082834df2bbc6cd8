package dev.kvserve.runtime.grad;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.data.Offset.offset;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.kvcache.quant.Calibration;
import dev.kvserve.kvcache.quant.CalibrationFile;
import dev.kvserve.kvcache.quant.KvQuantCalibration;
import dev.kvserve.kvcache.quant.KvSamples;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.SharedModels;
import dev.kvserve.runtime.eval.Perplexity;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The backward pass on the real stories260K model: same loss as the serving decoder, and a calibration end to end. */
class SharedModelGradTest {

    private static final String TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
            + "One day, she saw a big red ball under a tree. She ran to get it, but a small dog got there first. "
            + "The dog wagged its tail and pushed the ball to Lily. They played together until the sun went down.";

    @Test
    void lossEqualsTheDecodersNegativeLogLikelihood() throws Exception {
        Path path = SharedModels.file("stories260K.gguf");
        try (Backend backend = new CpuBackend(1);
             LlamaModel m = LlamaModel.load(path, backend, 1);
             KvCacheManager kvm = new KvCacheManager(m.kvGeometry(), 16L << 20);
             ModelFile file = ModelFile.open(path)) {
            int[] tokens = m.tokenizer().encode(TEXT, true, false);
            assertThat(tokens.length).isGreaterThan(40);
            float[] logits;
            try (PagedSequence cache = kvm.open("fp32")) {
                logits = m.forward(List.of(new SequenceChunk(cache, tokens, true)))[0];
            }
            int vocab = m.config().vocabSize();
            double nll = 0;
            for (int t = 0; t < tokens.length - 1; t++) nll += Perplexity.negativeLogLikelihood(logits, t * vocab, vocab, tokens[t + 1]);
            nll /= tokens.length - 1;

            LlamaBackprop grad = new LlamaBackprop(GradConfig.of(ModelCalibrator.config(file)), file.tensors());
            LlamaBackprop.Result r = grad.forwardBackward(tokens);
            assertThat(r.loss()).isCloseTo(nll, offset(1e-4 * nll));
            // A trained model on its own kind of text: well below the uniform ln(512).
            assertThat(r.loss()).isLessThan(2.5);
            for (float[] g : r.keyGrads()) assertThat(norm(g)).isPositive().isFinite();
        }
    }

    private static double norm(float[] a) {
        double s = 0;
        for (float x : a) s += x * x;
        return Math.sqrt(s);
    }

    @Test
    void calibratesKvQuantWithFisherAndWritesAFileTheModelAccepts(@TempDir Path dir) throws Exception {
        Path path = SharedModels.file("stories260K.gguf");
        Path text = SharedModels.dir().resolveSibling("data").resolve("tinystories_val.txt");
        try (Backend backend = new CpuBackend(1);
             LlamaModel m = LlamaModel.load(path, backend, 1);
             ModelFile file = ModelFile.open(path)) {
            String excerpt = Files.readString(text).substring(0, 6000);
            int[] tokens = m.tokenizer().encode(excerpt, true, false);
            List<int[]> seqs = ModelCalibrator.sequences(tokens, 128, 4, m.tokenizer().bos());
            assertThat(seqs).hasSize(4);
            StringBuilder log = new StringBuilder();
            Calibration cal = ModelCalibrator.calibrate(file, seqs, "kvquant", "bits=3",
                    (stage, done, total) -> log.append(stage).append(' ').append(done).append('/').append(total).append('\n'));
            assertThat(log).contains("activations and gradients 4/4").contains("kvquant layer 4 values");
            KvQuantCalibration kq = (KvQuantCalibration) cal;
            assertThat(kq.keyCodebook(0).size()).isEqualTo(8);
            Path out = dir.resolve("stories260K.kvquant3.kvq");
            CalibrationFile.write(out, ModelCalibrator.identity(file), cal);
            assertThat(CalibrationFile.read(out, ModelCalibrator.identity(file)).spec()).isEqualTo(cal.spec());

            KvSamples samples = ModelCalibrator.collect(new LlamaBackprop(GradConfig.of(ModelCalibrator.config(file)), file.tensors()),
                    seqs.subList(0, 1), false, null);
            assertThat(samples.hasFisher()).isFalse();
            assertThat(samples.rows()).isEqualTo(128);
        }
    }
}
