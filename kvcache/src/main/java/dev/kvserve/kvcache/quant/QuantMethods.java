package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.policy.ComponentKind;
import dev.kvserve.kvcache.policy.KvMethodProvider;
import dev.kvserve.kvcache.policy.MethodDef;
import java.util.List;

/**
 * Registers the calibrated quantization formats with the policy registry:
 * <pre>
 *   kvquant:calib=FILE[,bits=4|3|2][,outliers=0.01][,fisher=true|false][,sinks=1][,qnorm=...]
 *   cq:calib=FILE[,c=4,bits=2 | c=8,bits=1 ...][,window=N][,rope=pre|post]
 *   aqua:calib=FILE[,bits=2][,dim=2][,first=4|fp16][,prefix=4][,buffer=128]
 * </pre>
 * Settings that were fixed when the file was fitted default to {@code file}; written ones must agree
 * with the file. {@code cq:window}, {@code aqua:prefix} and {@code aqua:buffer} are serving choices
 * and may differ from the calibration's.
 */
public final class QuantMethods implements KvMethodProvider {

    @Override
    public List<MethodDef> methods() {
        return List.of(
                new MethodDef("kvquant", ComponentKind.FORMAT,
                        "KVQuant: per-channel pre-RoPE keys, per-token values, nuq codebooks, dense-and-sparse outliers, fp16 sinks",
                        List.of(QuantParamSpecs.calib(),
                                QuantParamSpecs.fromFileIntChoice("bits", List.of(2, 3, 4)),
                                QuantParamSpecs.fromFileDouble("outliers", 0, 0.49),
                                QuantParamSpecs.fromFileBoolean("fisher"),
                                QuantParamSpecs.fromFileInt("sinks", 0, 1 << 20),
                                QuantParamSpecs.fromFileBoolean("qnorm")),
                        KvQuantFormat::new),
                new MethodDef("cq", ComponentKind.FORMAT,
                        "Coupled Quantization: c channels share one 2^(c·bits)-centroid code, Fisher-guided k-means",
                        List.of(QuantParamSpecs.calib(),
                                QuantParamSpecs.fromFileInt("c", 1, 16),
                                QuantParamSpecs.fromFileInt("bits", 1, 12),
                                QuantParamSpecs.fromFileBoolean("fisher"),
                                QuantParamSpecs.fromFileInt("sinks", 0, 1 << 20),
                                QuantParamSpecs.fromFileInt("window", 0, 1 << 20),
                                QuantParamSpecs.fromFileChoice("rope", List.of("pre", "post"))),
                        CqFormat::new),
                new MethodDef("aqua", ComponentKind.FORMAT,
                        "AQUA-KV: cross-layer linear predictors, Hadamard-rotated residuals on a Gaussian grid",
                        List.of(QuantParamSpecs.calib(),
                                QuantParamSpecs.fromFileInt("bits", 1, 8),
                                QuantParamSpecs.fromFileInt("dim", 1, 4),
                                QuantParamSpecs.fromFileChoice("first", List.of("fp16", "1", "2", "3", "4")),
                                QuantParamSpecs.fromFileInt("prefix", 0, 1 << 20),
                                QuantParamSpecs.fromFileInt("buffer", 1, 1 << 20)),
                        AquaFormat::new));
    }
}
