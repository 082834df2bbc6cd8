package dev.kvserve.nativ.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The PTX modules built from native/src/main/cuda by build-ptx.sh and shipped as resources
 * {@code dev/kvserve/nativ/cuda/ptx/<arch>/<module>.ptx}, and a reader of their entry points.
 */
public final class PtxLibrary {

    /** One module per .cu file. */
    public static final List<String> MODULES = List.of("matmul", "ops", "sampling", "kv_attention", "kv_select");
    public static final List<String> ARCHES = List.of("sm_80", "sm_90");

    private static final String ROOT = "/dev/kvserve/nativ/cuda/ptx/";
    private static final Pattern ENTRY = Pattern.compile("\\.entry\\s+([A-Za-z_][A-Za-z0-9_]*)\\s*\\(([^)]*)\\)");
    private static final Pattern PARAM = Pattern.compile("\\.param\\s+\\.([a-z0-9]+)");

    private PtxLibrary() {}

    /**
     * The PTX build for a device of compute capability {@code cc} (10 * major + minor): sm_90 for
     * Hopper and newer, sm_80 below (the driver JIT-compiles PTX for any newer GPU).
     */
    public static String archFor(int computeCapability) {
        return computeCapability >= 90 ? "sm_90" : "sm_80";
    }

    /** Resource path of a module's PTX. */
    public static String resource(String arch, String module) {
        return ROOT + arch + "/" + module + ".ptx";
    }

    /** PTX text of {@code module} for {@code arch}. */
    public static String text(String arch, String module) {
        String path = resource(arch, module);
        try (InputStream in = PtxLibrary.class.getResourceAsStream(path)) {
            if (in == null) {
                throw new IllegalStateException("PTX resource " + path + " is missing from the kvserve-native jar");
            }
            return new String(in.readAllBytes(), StandardCharsets.US_ASCII);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + path, e);
        }
    }

    /** The source hash the committed PTX was built from (SOURCES.sha256). */
    public static String builtFromSources() {
        try (InputStream in = PtxLibrary.class.getResourceAsStream(ROOT + "SOURCES.sha256")) {
            if (in == null) throw new IllegalStateException("PTX resource SOURCES.sha256 is missing");
            return new String(in.readAllBytes(), StandardCharsets.US_ASCII).strip();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Every {@code .entry} of a PTX text with the PTX types of its parameters, in order. */
    public static Map<String, List<String>> entries(String ptx) {
        Map<String, List<String>> entries = new LinkedHashMap<>();
        Matcher m = ENTRY.matcher(ptx);
        while (m.find()) {
            List<String> params = new ArrayList<>();
            Matcher p = PARAM.matcher(m.group(2));
            while (p.find()) params.add(p.group(1));
            entries.put(m.group(1), List.copyOf(params));
        }
        return entries;
    }

    /** Whether a parameter of PTX type {@code ptxType} can receive a value of {@code kind}. */
    public static boolean accepts(String ptxType, ParamKind kind) {
        return kind.ptxTypes.contains(ptxType);
    }

    /**
     * Fails with a message naming the kernel when {@code signature} is not what the PTX entry
     * declares (a launch with mismatched parameters would read garbage, not fail).
     */
    public static void requireSignature(String ptx, String module, String entry, List<ParamKind> signature) {
        List<String> declared = entries(ptx).get(entry);
        if (declared == null) {
            throw new IllegalStateException("PTX module " + module + " has no entry " + entry);
        }
        boolean ok = declared.size() == signature.size();
        for (int i = 0; ok && i < declared.size(); i++) ok = accepts(declared.get(i), signature.get(i));
        if (!ok) {
            throw new IllegalStateException("kernel " + entry + " in " + module + " declares " + declared
                    + " but Java passes " + signature);
        }
    }
}
