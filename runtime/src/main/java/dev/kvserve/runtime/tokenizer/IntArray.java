package dev.kvserve.runtime.tokenizer;

import java.util.Arrays;

/** Growable int array for encoder output. */
final class IntArray {
    private int[] values;
    private int size;

    IntArray(int capacity) {
        values = new int[Math.max(8, capacity)];
    }

    void add(int value) {
        if (size == values.length) {
            values = Arrays.copyOf(values, size * 2);
        }
        values[size++] = value;
    }

    int size() {
        return size;
    }

    int get(int index) {
        return values[index];
    }

    int[] toArray() {
        return Arrays.copyOf(values, size);
    }
}
