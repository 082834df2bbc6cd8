package dev.kvserve.runtime.tokenizer;

import java.util.Arrays;

/** Binary min-heap of primitive longs: merge queues pack (priority, position) into one key. */
final class LongHeap {
    private long[] keys;
    private int size;

    LongHeap(int capacity) {
        keys = new long[Math.max(16, capacity)];
    }

    boolean isEmpty() {
        return size == 0;
    }

    void clear() {
        size = 0;
    }

    void push(long key) {
        if (size == keys.length) {
            keys = Arrays.copyOf(keys, size * 2);
        }
        int child = size++;
        while (child > 0) {
            int parent = (child - 1) >>> 1;
            if (keys[parent] <= key) {
                break;
            }
            keys[child] = keys[parent];
            child = parent;
        }
        keys[child] = key;
    }

    long pop() {
        long top = keys[0];
        long last = keys[--size];
        int parent = 0;
        int half = size >>> 1;
        while (parent < half) {
            int child = 2 * parent + 1;
            if (child + 1 < size && keys[child + 1] < keys[child]) {
                child++;
            }
            if (last <= keys[child]) {
                break;
            }
            keys[parent] = keys[child];
            parent = child;
        }
        if (size > 0) {
            keys[parent] = last;
        }
        return top;
    }
}
