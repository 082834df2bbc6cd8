package dev.kvserve.kvcache.quant;

import java.util.ArrayList;
import java.util.List;

/**
 * Append-only fixed-width byte rows (one per token), allocated in blocks so that appending never
 * copies what is already stored.
 */
final class RowStore {

    private static final int ROWS_PER_BLOCK = 256;
    private final int rowBytes;
    private final List<byte[]> blocks = new ArrayList<>();
    private int rows;

    RowStore(int rowBytes) {
        this.rowBytes = rowBytes;
    }

    int rowBytes() {
        return rowBytes;
    }

    int rows() {
        return rows;
    }

    /** Appends a zeroed row and returns its index. */
    int addRow() {
        if (rows % ROWS_PER_BLOCK == 0) blocks.add(new byte[ROWS_PER_BLOCK * rowBytes]);
        return rows++;
    }

    byte[] block(int row) {
        return blocks.get(row / ROWS_PER_BLOCK);
    }

    int offset(int row) {
        return (row % ROWS_PER_BLOCK) * rowBytes;
    }

    long bytes() {
        return (long) rows * rowBytes;
    }

    void clear() {
        blocks.clear();
        rows = 0;
    }
}
