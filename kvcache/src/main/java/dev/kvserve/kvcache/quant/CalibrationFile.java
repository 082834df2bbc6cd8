package dev.kvserve.kvcache.quant;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvGeometry;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.List;

/**
 * The calibration ("quantizer") file: one fitted {@link Calibration} plus the identity of the model it
 * was fitted to. Format version 1, all numbers big-endian ({@link DataOutputStream}):
 *
 * <pre>
 *   bytes  8   magic "KVQCALIB"
 *   u16        format version (1)
 *   utf        method: kvquant | cq | aqua            (utf = u16 length + modified UTF-8)
 *   utf        method settings, canonical spec (e.g. bits=4,outliers=0.01,...)
 *   model identity:
 *     utf      architecture (e.g. llama)
 *     i32 ×5   layers, heads, kv heads, head size, max context
 *     i32      rope dims;  f32 rope base;  f32 rope scale;  u8 rope neox (0/1)
 *     utf      name of the hashed weight tensor;  utf  its SHA-256 (hex)
 *   i64        payload length, then the payload (method-specific, see each Calibration's writePayload)
 *   bytes 32   SHA-256 of every byte before it
 * </pre>
 *
 * Reading verifies the magic, the version, the checksum and then the model identity, and refuses with
 * a message naming what is wrong; a file is written to a temporary sibling and moved into place.
 */
public final class CalibrationFile {

    public static final int VERSION = 1;
    private static final byte[] MAGIC = "KVQCALIB".getBytes(StandardCharsets.US_ASCII);

    /** A calibration read back with the identity stored next to it. */
    public record Loaded(ModelIdentity identity, Calibration calibration) {}

    private CalibrationFile() {}

    public static void write(Path file, ModelIdentity identity, Calibration calibration) throws IOException {
        if (!identity.matches(calibration.geometry())) {
            throw new IllegalArgumentException("calibration geometry does not match the model identity " + identity);
        }
        byte[] bytes = toBytes(identity, calibration);
        Path dir = file.toAbsolutePath().getParent();
        if (dir != null) Files.createDirectories(dir);
        Path tmp = Files.createTempFile(dir, file.getFileName().toString(), ".tmp");
        try {
            Files.write(tmp, bytes);
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    public static byte[] toBytes(ModelIdentity identity, Calibration calibration) {
        try {
            ByteArrayOutputStream payloadBytes = new ByteArrayOutputStream();
            DataOutputStream payload = new DataOutputStream(payloadBytes);
            calibration.writePayload(payload);
            payload.flush();

            ByteArrayOutputStream all = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(all);
            out.write(MAGIC);
            out.writeShort(VERSION);
            out.writeUTF(calibration.method().specName);
            out.writeUTF(calibration.spec());
            KvGeometry g = calibration.geometry();
            out.writeUTF(identity.architecture());
            out.writeInt(g.layers());
            out.writeInt(g.heads());
            out.writeInt(g.kvHeads());
            out.writeInt(g.headDim());
            out.writeInt(g.maxContext());
            out.writeInt(identity.ropeDims());
            out.writeFloat(identity.ropeBase());
            out.writeFloat(identity.ropeScale());
            out.writeByte(identity.ropeNeox() ? 1 : 0);
            out.writeUTF(identity.hashedTensor());
            out.writeUTF(identity.tensorSha256());
            out.writeLong(payloadBytes.size());
            payloadBytes.writeTo(out);
            out.flush();
            byte[] body = all.toByteArray();
            byte[] digest = sha256(body, body.length);
            byte[] result = Arrays.copyOf(body, body.length + digest.length);
            System.arraycopy(digest, 0, result, body.length, digest.length);
            return result;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Reads a file and checks that it was made for {@code expected}; refuses otherwise. */
    public static Calibration read(Path file, ModelIdentity expected) throws IOException {
        Loaded loaded = readAny(file);
        List<String> diff = loaded.identity().differences(expected);
        if (!diff.isEmpty()) {
            throw new IllegalArgumentException("calibration file " + file + " was made for a different model: " + String.join("; ", diff));
        }
        return loaded.calibration();
    }

    /** Reads a file without checking the model (e.g. to print what it is for). */
    public static Loaded readAny(Path file) throws IOException {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new IOException("calibration file " + file + " does not exist", e);
        }
        return fromBytes(bytes, file.toString());
    }

    public static Loaded fromBytes(byte[] bytes, String source) {
        if (bytes.length < MAGIC.length + 2 || !Arrays.equals(Arrays.copyOf(bytes, MAGIC.length), MAGIC)) {
            throw new IllegalArgumentException(source + " is not a KVServe calibration file (bad magic)");
        }
        int version = ((bytes[MAGIC.length] & 0xFF) << 8) | (bytes[MAGIC.length + 1] & 0xFF);
        if (version != VERSION) {
            throw new IllegalArgumentException(source + " has calibration format version " + version + "; this build reads version " + VERSION);
        }
        if (bytes.length < MAGIC.length + 2 + 32) throw new IllegalArgumentException(source + " is truncated");
        int bodyLength = bytes.length - 32;
        byte[] digest = sha256(bytes, bodyLength);
        if (!Arrays.equals(digest, Arrays.copyOfRange(bytes, bodyLength, bytes.length))) {
            throw new IllegalArgumentException(source + " is corrupt: its SHA-256 checksum does not match its contents");
        }
        try {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes, 0, bodyLength));
            in.skipNBytes(MAGIC.length + 2);
            QuantMethod method = QuantMethod.byName(in.readUTF());
            String spec = in.readUTF();
            String arch = in.readUTF();
            int layers = in.readInt(), heads = in.readInt(), kvHeads = in.readInt(), headDim = in.readInt(), maxContext = in.readInt();
            int ropeDims = in.readInt();
            float ropeBase = in.readFloat(), ropeScale = in.readFloat();
            boolean neox = in.readByte() != 0;
            String tensor = in.readUTF(), sha = in.readUTF();
            ModelIdentity identity = new ModelIdentity(arch, layers, heads, kvHeads, headDim, ropeDims, ropeBase, ropeScale, neox, tensor, sha);
            KvGeometry geo = new KvGeometry(layers, heads, kvHeads, headDim, maxContext, new RopeConfig(ropeDims, ropeBase, ropeScale, neox));
            long payloadLength = in.readLong();
            if (payloadLength != in.available()) {
                throw new IOException("payload length " + payloadLength + " does not match the " + in.available() + " bytes present");
            }
            Calibration cal = switch (method) {
                case KVQUANT -> KvQuantCalibration.readPayload(KvQuantConfig.parse(spec), geo, in);
                case CQ -> CqCalibration.readPayload(CqConfig.parse(spec), geo, in);
                case AQUA -> AquaCalibration.readPayload(AquaConfig.parse(spec), geo, in);
            };
            if (in.available() != 0) throw new IOException(in.available() + " unexpected bytes after the payload");
            return new Loaded(identity, cal);
        } catch (EOFException e) {
            throw new IllegalArgumentException(source + " is corrupt: it ends in the middle of its payload", e);
        } catch (IOException | IllegalArgumentException e) {
            throw new IllegalArgumentException(source + " is not a valid calibration file: " + e.getMessage(), e);
        }
    }

    private static byte[] sha256(byte[] data, int length) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(data, 0, length);
            return md.digest();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 unavailable", e);
        }
    }
}
