package dev.kvserve.kvcache.quant;

import java.util.ArrayList;
import java.util.List;

/**
 * One sequence under AQUA-KV, laid out as the reference cache ({@code aquakv/cache_utils.py}): the
 * first {@code prefix} tokens in fp16; then write-once chunks, each holding for every layer the HIGGS
 * codes of the residuals {@code K_l − K̂_l} and {@code V_l − V̂_l}; then a buffer of recent tokens in
 * fp16 that becomes a chunk once it holds {@code buffer} tokens.
 *
 * <p>Decoding layer {@code l} needs the reconstruction of layer {@code l−1}: attention (called layer by
 * layer in order each step) keeps the previous layer's reconstruction of the compressed tokens as a
 * transient workspace, advances it one layer per call, and rebuilds from layer 0 when called out of
 * order. That workspace is not part of {@link #bytesHeld()}: like the reference, the method trades
 * re-computation ({@code O(T·C²)} per layer per step) for memory.
 */
final class AquaSequence extends QuantizedSequenceBase {

    private static final class Chunk {
        final int start;
        final int count;
        final byte[][] keyCodes;
        final short[][] keyNorms;
        final byte[][] valueCodes;
        final short[][] valueNorms;
        int layersWritten;

        Chunk(int start, int count, int layers) {
            this.start = start;
            this.count = count;
            keyCodes = new byte[layers][];
            keyNorms = new short[layers][];
            valueCodes = new byte[layers][];
            valueNorms = new short[layers][];
        }
    }

    private final AquaCalibration cal;
    private final int prefix;
    private final int bufferSize;
    private final HalfRows[] prefixK;
    private final HalfRows[] prefixV;
    private final HalfRows[] bufK;
    private final HalfRows[] bufV;
    private final List<Chunk> chunks = new ArrayList<>();
    private final int[] compressed;
    private float[] writeK;
    private float[] writeV;
    private int readLayer = -1;
    private int readTokens;
    private float[] readK = new float[0];
    private float[] readV = new float[0];

    AquaSequence(AquaCalibration cal) {
        super(cal.geometry());
        this.cal = cal;
        this.prefix = cal.config().prefix();
        this.bufferSize = cal.config().buffer();
        int layers = geo.layers();
        prefixK = new HalfRows[layers];
        prefixV = new HalfRows[layers];
        bufK = new HalfRows[layers];
        bufV = new HalfRows[layers];
        for (int l = 0; l < layers; l++) {
            prefixK[l] = new HalfRows(kvDim);
            prefixV[l] = new HalfRows(kvDim);
            bufK[l] = new HalfRows(kvDim);
            bufV[l] = new HalfRows(kvDim);
        }
        compressed = new int[layers];
    }

    @Override
    protected void appendRows(int layer, float[] k, float[] v, int rows, int startPos) {
        for (int r = 0; r < rows; r++) {
            if (startPos + r < prefix) {
                prefixK[layer].add(k, r * kvDim);
                prefixV[layer].add(v, r * kvDim);
            } else {
                bufK[layer].add(k, r * kvDim);
                bufV[layer].add(v, r * kvDim);
            }
        }
        if (bufK[layer].rows() >= bufferSize) flush(layer);
    }

    @Override
    protected void appendToken(int layer, float[] k, int kOff, float[] v, int vOff, int pos) {
        throw new UnsupportedOperationException("AQUA-KV appends whole steps (appendRows)");
    }

    /** Compresses layer {@code layer}'s buffer into the newest chunk (layer 0 opens a new chunk). */
    private void flush(int layer) {
        int n = bufK[layer].rows();
        float[] keys = new float[n * kvDim], values = new float[n * kvDim];
        for (int r = 0; r < n; r++) {
            bufK[layer].read(r, 0, kvDim, keys, r * kvDim);
            bufV[layer].read(r, 0, kvDim, values, r * kvDim);
        }
        Chunk chunk;
        if (layer == 0) {
            chunk = new Chunk(compressed[0], n, geo.layers());
            chunks.add(chunk);
        } else {
            chunk = chunks.isEmpty() ? null : chunks.get(chunks.size() - 1);
            if (chunk == null || chunk.layersWritten != layer || chunk.count != n || writeK == null) {
                throw new IllegalStateException("AQUA-KV compresses a chunk layer by layer in order: layer " + layer
                        + " cannot be written before the layers below it");
            }
        }
        float[] recK, recV;
        if (layer == 0) {
            recK = encode(chunk, 0, true, keys, null, n);
            recV = encode(chunk, 0, false, values, null, n);
        } else {
            recK = encode(chunk, layer, true, keys, cal.predictKeys(layer, writeK, n), n);
            recV = encode(chunk, layer, false, values, cal.predictValues(layer, recK, writeV, n), n);
        }
        chunk.layersWritten = layer + 1;
        compressed[layer] += n;
        bufK[layer].clear();
        bufV[layer].clear();
        boolean last = layer == geo.layers() - 1;
        writeK = last ? null : recK;
        writeV = last ? null : recV;
    }

    /** Stores the codes of {@code target − prediction} for a chunk's layer; returns the reconstruction. */
    private float[] encode(Chunk chunk, int layer, boolean keys, float[] target, float[] prediction, int n) {
        HiggsQuantizer q = cal.quantizer(layer);
        float[] rec = new float[n * kvDim];
        if (q == null) {
            byte[] raw = new byte[n * kvDim * 2];
            for (int i = 0; i < n * kvDim; i++) {
                short h = Half.bits(target[i]);
                raw[2 * i] = (byte) h;
                raw[2 * i + 1] = (byte) (h >> 8);
                rec[i] = Half.value(h);
            }
            if (keys) chunk.keyCodes[layer] = raw;
            else chunk.valueCodes[layer] = raw;
            return rec;
        }
        int codesPer = q.codes(), bits = q.grid().codeBits(), groups = q.groups();
        int rowBytes = BitPacking.bytesFor(codesPer, bits);
        byte[] packed = new byte[n * rowBytes];
        short[] norms = new short[n * groups];
        int[] codes = new int[codesPer];
        short[] rowNorms = new short[groups];
        float[] residual = new float[kvDim];
        for (int r = 0; r < n; r++) {
            for (int i = 0; i < kvDim; i++) residual[i] = target[r * kvDim + i] - (prediction == null ? 0f : prediction[r * kvDim + i]);
            q.quantize(residual, 0, codes, rowNorms);
            for (int i = 0; i < codesPer; i++) BitPacking.put(packed, r * rowBytes, i, bits, codes[i]);
            System.arraycopy(rowNorms, 0, norms, r * groups, groups);
            q.dequantize(codes, rowNorms, rec, r * kvDim);
            if (prediction != null) for (int i = 0; i < kvDim; i++) rec[r * kvDim + i] += prediction[r * kvDim + i];
        }
        if (keys) {
            chunk.keyCodes[layer] = packed;
            chunk.keyNorms[layer] = norms;
        } else {
            chunk.valueCodes[layer] = packed;
            chunk.valueNorms[layer] = norms;
        }
        return rec;
    }

    /** Dequantized residual (or fp16 values) of a chunk's layer, added onto {@code into} (null: fresh). */
    private void decodeChunk(Chunk chunk, int layer, boolean keys, float[] into, int intoOff) {
        HiggsQuantizer q = cal.quantizer(layer);
        byte[] data = keys ? chunk.keyCodes[layer] : chunk.valueCodes[layer];
        if (q == null) {
            for (int i = 0; i < chunk.count * kvDim; i++) {
                into[intoOff + i] = Half.value((short) ((data[2 * i] & 0xFF) | (data[2 * i + 1] << 8)));
            }
            return;
        }
        short[] norms = keys ? chunk.keyNorms[layer] : chunk.valueNorms[layer];
        int codesPer = q.codes(), bits = q.grid().codeBits(), groups = q.groups();
        int rowBytes = BitPacking.bytesFor(codesPer, bits);
        int[] codes = new int[codesPer];
        short[] rowNorms = new short[groups];
        float[] res = new float[kvDim];
        for (int r = 0; r < chunk.count; r++) {
            for (int i = 0; i < codesPer; i++) codes[i] = BitPacking.get(data, r * rowBytes, i, bits);
            System.arraycopy(norms, r * groups, rowNorms, 0, groups);
            q.dequantize(codes, rowNorms, res, 0);
            int o = intoOff + r * kvDim;
            for (int i = 0; i < kvDim; i++) into[o + i] += res[i];
        }
    }

    @Override
    protected void beginAttend(int layer) {
        int need = compressed[layer];
        if (readLayer == layer && readTokens == need) return;
        if (!(layer > 0 && readLayer == layer - 1 && readTokens >= need)) {
            for (int l = 0; l < layer; l++) {
                if (compressed[l] < need) throw new IllegalStateException("AQUA-KV layer " + l + " holds fewer compressed tokens than layer " + layer);
            }
            readLayer = -1;
            for (int l = 0; l < layer; l++) advance(l, need);
        }
        advance(layer, need);
    }

    /** Reconstructs the first {@code tokens} compressed tokens of {@code layer} from the held previous layer. */
    private void advance(int layer, int tokens) {
        float[] k = new float[tokens * kvDim], v = new float[tokens * kvDim];
        if (layer > 0) {
            float[] predK = cal.predictKeys(layer, readK, tokens);
            System.arraycopy(predK, 0, k, 0, k.length);
        }
        for (Chunk chunk : chunks) {
            if (chunk.start >= tokens) break;
            decodeChunk(chunk, layer, true, k, chunk.start * kvDim);
        }
        if (layer > 0) {
            float[] predV = cal.predictValues(layer, k, readV, tokens);
            System.arraycopy(predV, 0, v, 0, v.length);
        }
        for (Chunk chunk : chunks) {
            if (chunk.start >= tokens) break;
            decodeChunk(chunk, layer, false, v, chunk.start * kvDim);
        }
        readK = k;
        readV = v;
        readLayer = layer;
        readTokens = tokens;
    }

    @Override
    protected void decodeKeyHead(int layer, int t, int kvHead, float[] out) {
        decode(layer, t, kvHead, out, true);
    }

    @Override
    protected void decodeValueHead(int layer, int t, int kvHead, float[] out) {
        decode(layer, t, kvHead, out, false);
    }

    private void decode(int layer, int t, int kvHead, float[] out, boolean keys) {
        int base = kvHead * headDim;
        if (t < prefix) {
            (keys ? prefixK : prefixV)[layer].read(t, base, headDim, out, 0);
            return;
        }
        int idx = t - prefix;
        if (idx < compressed[layer]) {
            if (readLayer != layer) throw new IllegalStateException("AQUA-KV layer " + layer + " read without beginAttend");
            System.arraycopy(keys ? readK : readV, idx * kvDim + base, out, 0, headDim);
            return;
        }
        (keys ? bufK : bufV)[layer].read(idx - compressed[layer], base, headDim, out, 0);
    }

    @Override
    public long bytesHeld() {
        long total = 0;
        for (int l = 0; l < geo.layers(); l++) {
            long fp16 = prefixK[l].rows() + bufK[l].rows();
            total += fp16 * kvDim * 4L + 2L * compressed[l] * cal.vectorBytes(l);
        }
        return total;
    }

    @Override
    protected void release() {
        chunks.clear();
        for (int l = 0; l < geo.layers(); l++) {
            prefixK[l].clear();
            prefixV[l].clear();
            bufK[l].clear();
            bufV[l].clear();
        }
        readK = readV = new float[0];
        writeK = writeV = null;
    }
}
