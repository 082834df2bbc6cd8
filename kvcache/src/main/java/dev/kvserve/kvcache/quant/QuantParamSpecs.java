package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.policy.ParamSpec;
import dev.kvserve.kvcache.policy.Params;
import java.util.List;
import java.util.Objects;

/**
 * Policy parameters of the calibrated methods. Settings fixed at calibration time default to the
 * word {@code file} ("as the calibration file says"); a value written in the spec must equal the
 * file's, so that a spec never silently runs with settings other than it states.
 */
final class QuantParamSpecs {

    static final String FILE = "file";

    private QuantParamSpecs() {}

    /** The calibration file: a server path, so the operator's to name (a request uses a server profile). */
    static ParamSpec calib() {
        return ParamSpec.ofText("calib", null).forOperatorOnly();
    }

    static ParamSpec fromFileInt(String name, int min, int max) {
        ParamSpec inner = ParamSpec.ofInt(name, null, min, max);
        return fromFile(name, inner);
    }

    static ParamSpec fromFileIntChoice(String name, List<Integer> allowed) {
        return fromFile(name, ParamSpec.ofIntChoice(name, null, allowed));
    }

    static ParamSpec fromFileDouble(String name, double min, double max) {
        return fromFile(name, ParamSpec.ofDouble(name, null, min, max));
    }

    static ParamSpec fromFileBoolean(String name) {
        return fromFile(name, ParamSpec.ofBoolean(name, null));
    }

    static ParamSpec fromFileChoice(String name, List<String> allowed) {
        return fromFile(name, ParamSpec.ofChoice(name, null, allowed));
    }

    private static ParamSpec fromFile(String name, ParamSpec inner) {
        return new ParamSpec(name, inner.accepts() + " or '" + FILE + "' (the calibration file's value)", FILE,
                s -> s.trim().equals(FILE) ? FILE : inner.parser().apply(s), v -> FILE.equals(v) ? FILE : inner.format(v));
    }

    /** The written value of {@code name}, or null when it is {@code file}. */
    static Object given(Params params, String name) {
        Object v = params.values().get(name);
        return FILE.equals(v) ? null : v;
    }

    /** Refuses a spec value that differs from the calibration's. */
    static void mustMatch(Params params, String name, Object fileValue, String file) {
        Object v = given(params, name);
        if (v == null) return;
        boolean same = v instanceof Double d && fileValue instanceof Double f ? Math.abs(d - f) < 1e-12 : Objects.equals(v, fileValue);
        if (!same) {
            throw new IllegalArgumentException(params.method() + ": calibration file " + file + " was fitted with " + name + "="
                    + fileValue + " but the policy asks for " + name + "=" + v + "; write " + name + "=" + fileValue
                    + " (or leave it out) or calibrate again");
        }
    }
}
