package dev.kvserve.kvcache.quant;

import java.util.ArrayList;
import java.util.List;

/** Append-only rows of binary16 values (tokens kept in fp16: sinks, recent windows, buffers). */
final class HalfRows {

    private static final int ROWS_PER_BLOCK = 64;
    private final int width;
    private final List<short[]> blocks = new ArrayList<>();
    private int rows;
    private int dropped;

    HalfRows(int width) {
        this.width = width;
    }

    /** Appends {@code x[off..off+width)} rounded to binary16. */
    void add(float[] x, int off) {
        int local = rows - dropped;
        if (local % ROWS_PER_BLOCK == 0 && local / ROWS_PER_BLOCK == blocks.size()) blocks.add(new short[ROWS_PER_BLOCK * width]);
        short[] b = blocks.get(local / ROWS_PER_BLOCK);
        int o = (local % ROWS_PER_BLOCK) * width;
        for (int i = 0; i < width; i++) b[o + i] = Half.bits(x[off + i]);
        rows++;
    }

    /** Reads {@code count} values of row {@code row} from column {@code col} into {@code out[outOff..)}. */
    void read(int row, int col, int count, float[] out, int outOff) {
        int local = row - dropped;
        if (local < 0 || row >= rows) throw new IndexOutOfBoundsException("fp16 row " + row + " not held");
        short[] b = blocks.get(local / ROWS_PER_BLOCK);
        int o = (local % ROWS_PER_BLOCK) * width + col;
        for (int i = 0; i < count; i++) out[outOff + i] = Half.value(b[o + i]);
    }

    int rows() {
        return rows;
    }

    /** Rows still held (not dropped from the front). */
    int held() {
        return rows - dropped;
    }

    /** Forgets the oldest whole blocks of rows below {@code row} (sliding windows). */
    void dropBefore(int row) {
        while ((row - dropped) >= ROWS_PER_BLOCK && !blocks.isEmpty()) {
            blocks.remove(0);
            dropped += ROWS_PER_BLOCK;
        }
    }

    long bytes(long rowsCounted) {
        return rowsCounted * width * 2L;
    }

    void clear() {
        blocks.clear();
        rows = 0;
        dropped = 0;
    }
}
