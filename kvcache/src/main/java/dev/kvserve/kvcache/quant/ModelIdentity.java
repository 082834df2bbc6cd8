package dev.kvserve.kvcache.quant;

import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.kvcache.KvGeometry;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * What a calibration file was fitted to: the architecture, the KV geometry and RoPE, and a SHA-256 of
 * one weight tensor (its name, storage type, shape and bytes), so that a file made for one model — or
 * for a differently quantized copy of it — is refused for another.
 *
 * @param hashedTensor name of the tensor whose bytes were hashed (e.g. {@code blk.0.attn_k.weight})
 * @param tensorSha256 lower-case hex SHA-256
 */
public record ModelIdentity(String architecture, int layers, int heads, int kvHeads, int headDim,
                            int ropeDims, float ropeBase, float ropeScale, boolean ropeNeox,
                            String hashedTensor, String tensorSha256) {

    /** The tensor hashed by default: the first layer's key projection, the weights that make the keys. */
    public static final String DEFAULT_HASHED_TENSOR = "blk.0.attn_k.weight";

    public static ModelIdentity of(String architecture, KvGeometry geometry, WeightTensor tensor) {
        return new ModelIdentity(architecture, geometry.layers(), geometry.heads(), geometry.kvHeads(), geometry.headDim(),
                geometry.rope().dims(), geometry.rope().freqBase(), geometry.rope().freqScale(), geometry.rope().neox(),
                tensor.name(), sha256(tensor));
    }

    /** SHA-256 over the tensor's name, type, shape and data bytes (read from its host segment). */
    public static String sha256(WeightTensor tensor) {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 unavailable", e);
        }
        md.update((tensor.name() + "|" + tensor.type().name() + "|" + java.util.Arrays.toString(tensor.shape()) + "|")
                .getBytes(StandardCharsets.UTF_8));
        var data = tensor.data();
        long size = data.byteSize();
        byte[] buf = new byte[1 << 16];
        for (long off = 0; off < size; off += buf.length) {
            int n = (int) Math.min(buf.length, size - off);
            java.lang.foreign.MemorySegment.copy(data, ValueLayout.JAVA_BYTE, off, buf, 0, n);
            md.update(buf, 0, n);
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /** Whether the geometry of this identity is the given one (layers, heads, head size, RoPE). */
    public boolean matches(KvGeometry g) {
        return layers == g.layers() && heads == g.heads() && kvHeads == g.kvHeads() && headDim == g.headDim()
                && ropeDims == g.rope().dims() && ropeBase == g.rope().freqBase() && ropeScale == g.rope().freqScale()
                && ropeNeox == g.rope().neox();
    }

    /** A readable list of what differs from {@code other}, or an empty list when they are the same model. */
    public List<String> differences(ModelIdentity other) {
        List<String> d = new ArrayList<>();
        diff(d, "architecture", architecture, other.architecture);
        diff(d, "layers", layers, other.layers);
        diff(d, "heads", heads, other.heads);
        diff(d, "kv heads", kvHeads, other.kvHeads);
        diff(d, "head size", headDim, other.headDim);
        diff(d, "rope dims", ropeDims, other.ropeDims);
        diff(d, "rope base", ropeBase, other.ropeBase);
        diff(d, "rope scale", ropeScale, other.ropeScale);
        diff(d, "rope layout (neox)", ropeNeox, other.ropeNeox);
        diff(d, "hashed tensor", hashedTensor, other.hashedTensor);
        if (hashedTensor.equals(other.hashedTensor)) diff(d, "SHA-256 of " + hashedTensor, tensorSha256, other.tensorSha256);
        return d;
    }

    private static void diff(List<String> out, String what, Object a, Object b) {
        if (!a.equals(b)) out.add(what + ": file has " + a + ", model has " + b);
    }

    @Override
    public String toString() {
        return architecture + " L=" + layers + " H=" + heads + " Hkv=" + kvHeads + " d=" + headDim + " rope(" + ropeDims + ","
                + ropeBase + "," + ropeScale + (ropeNeox ? ",neox" : "") + ") " + hashedTensor + "=" + tensorSha256.substring(0, Math.min(12, tensorSha256.length()));
    }
}
