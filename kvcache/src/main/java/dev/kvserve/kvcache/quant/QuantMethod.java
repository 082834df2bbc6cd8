package dev.kvserve.kvcache.quant;

import java.util.Locale;

/** The calibrated KV-cache quantization methods, by the name their policy spec and calibration file use. */
public enum QuantMethod {
    KVQUANT("kvquant"),
    CQ("cq"),
    AQUA("aqua");

    public final String specName;

    QuantMethod(String specName) {
        this.specName = specName;
    }

    public static QuantMethod byName(String name) {
        String n = name.trim().toLowerCase(Locale.ROOT);
        for (QuantMethod m : values()) if (m.specName.equals(n)) return m;
        throw new IllegalArgumentException("unknown quantization method '" + name + "' (known: kvquant, cq, aqua)");
    }
}
