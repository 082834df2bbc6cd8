package dev.kvserve.runtime.grad;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.quant.Calibration;
import dev.kvserve.kvcache.quant.CalibrationFile;
import dev.kvserve.kvcache.quant.ModelIdentity;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.SharedModels;
import dev.kvserve.runtime.model.LlamaModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A calibration file is bound to the model it was fitted on: a cache built for a loaded model refuses
 * a file made for another one, also when the two have the same shape (stories260K in F32 and in Q8_0
 * differ only in their weights), and names both.
 */
class CalibrationModelCheckTest {

    @Test
    void aCalibrationFileFromAnotherModelIsRefusedNamingBoth(@TempDir Path dir) throws Exception {
        Path f32 = SharedModels.file("stories260K.gguf");
        Path q8 = SharedModels.file("stories260K-q8_0.gguf");
        Path other = SharedModels.file("tinystories-656k/tinystories-656k-f32.gguf");
        Path text = SharedModels.dir().resolveSibling("data").resolve("tinystories_val.txt");
        Path calib = dir.resolve("stories260K-kvquant4.kvq");
        ModelIdentity fileModel;
        try (Backend backend = new CpuBackend(1); LlamaModel m = LlamaModel.load(f32, backend, 1); ModelFile file = ModelFile.open(f32)) {
            int[] tokens = m.tokenizer().encode(Files.readString(text).substring(0, 2_000), true, false);
            List<int[]> seqs = ModelCalibrator.sequences(tokens, 64, 2, m.tokenizer().bos());
            Calibration cal = ModelCalibrator.calibrate(file, seqs, "kvquant", "bits=4,fisher=false", null);
            fileModel = ModelCalibrator.identity(file);
            assertThat(m.identity()).isEqualTo(fileModel);
            CalibrationFile.write(calib, fileModel, cal);
            try (KvCacheManager kvm = new KvCacheManager(m.identity(), m.kvGeometry(), 1 << 20)) {
                kvm.open("kvquant:calib=" + calib).close();
            }
        }
        String spec = "kvquant:calib=" + calib;
        try (Backend backend = new CpuBackend(1); LlamaModel m = LlamaModel.load(q8, backend, 1);
             KvCacheManager kvm = new KvCacheManager(m.identity(), m.kvGeometry(), 1 << 20)) {
            assertThat(m.kvGeometry().headDim()).isEqualTo(8);
            assertThatThrownBy(() -> kvm.open(spec))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining(calib.toString())
                    .hasMessageContaining(fileModel.toString())
                    .hasMessageContaining(m.identity().toString())
                    .hasMessageContaining("SHA-256 of blk.0.attn_k.weight: file has " + fileModel.tensorSha256());
            kvm.open("fp16").close();
        }
        try (Backend backend = new CpuBackend(1); LlamaModel m = LlamaModel.load(other, backend, 1);
             KvCacheManager kvm = new KvCacheManager(m.identity(), m.kvGeometry(), 1 << 20)) {
            assertThatThrownBy(() -> kvm.open(spec))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining(fileModel.toString())
                    .hasMessageContaining(m.identity().toString())
                    .hasMessageContaining("layers: file has 5, model has 2")
                    .hasMessageContaining("head size: file has 8, model has 16");
        }
    }
}
