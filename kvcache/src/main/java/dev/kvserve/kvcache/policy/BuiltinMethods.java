package dev.kvserve.kvcache.policy;

import dev.kvserve.kvcache.evict.Budget;
import dev.kvserve.kvcache.evict.SinkWindowEviction;
import dev.kvserve.kvcache.format.FullPrecisionFormat;
import dev.kvserve.kvcache.format.KiviFormat;
import dev.kvserve.kvcache.format.UniformIntFormat;
import dev.kvserve.kvcache.tier.OffloadTier;
import dev.kvserve.kvcache.tier.PrimaryTier;
import java.util.List;

/** The methods that ship with the cache: fp32, fp16, int8, int4, int3, kivi, sink, primary. */
public final class BuiltinMethods implements KvMethodProvider {

    @Override
    public List<MethodDef> methods() {
        return List.of(
                new MethodDef("fp32", ComponentKind.FORMAT, "32-bit floats, exact", List.of(),
                        p -> new FullPrecisionFormat(p, false)),
                new MethodDef("fp16", ComponentKind.FORMAT, "16-bit IEEE halfs", List.of(),
                        p -> new FullPrecisionFormat(p, true)),
                new MethodDef("int8", ComponentKind.FORMAT, "8-bit uniform per token, min/max per channel group",
                        List.of(ParamSpec.ofIntOrWord("group", "head", "head", 1)), p -> new UniformIntFormat(p, 8)),
                new MethodDef("int4", ComponentKind.FORMAT, "4-bit uniform per token, min/max per channel group",
                        List.of(ParamSpec.ofIntOrWord("group", "head", "head", 1)), p -> new UniformIntFormat(p, 4)),
                new MethodDef("int3", ComponentKind.FORMAT, "3-bit uniform per token, min/max per channel group",
                        List.of(ParamSpec.ofIntOrWord("group", "head", "head", 1)), p -> new UniformIntFormat(p, 3)),
                new MethodDef("kivi", ComponentKind.FORMAT,
                        "KIVI: keys per channel over token groups, values per token, fp16 recent window",
                        List.of(ParamSpec.ofIntChoice("bits", 2, List.of(2, 4)),
                                ParamSpec.ofInt("group", 32, 1, 4096),
                                ParamSpec.ofInt("residual", 128, 0, Integer.MAX_VALUE)),
                        KiviFormat::new),
                new MethodDef("sink", ComponentKind.EVICTION,
                        "StreamingLLM: keep the first sinks tokens and the last window tokens",
                        List.of(ParamSpec.ofInt("sinks", 4, 0, 1 << 20), Budget.param("window", "1020", 1)),
                        SinkWindowEviction::new),
                new MethodDef("primary", ComponentKind.TIER, "all blocks in the pool's memory", List.of(), PrimaryTier::new),
                OffloadTier.definition());
    }
}
