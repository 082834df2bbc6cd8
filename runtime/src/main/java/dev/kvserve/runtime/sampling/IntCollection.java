package dev.kvserve.runtime.sampling;

/** A read-only sequence of ints (token history) without boxing. */
public interface IntCollection {
    int size();

    int get(int index);

    static IntCollection of(int... values) {
        int[] copy = values.clone();
        return new IntCollection() {
            @Override
            public int size() {
                return copy.length;
            }

            @Override
            public int get(int index) {
                return copy[index];
            }
        };
    }

    static IntCollection empty() {
        return of();
    }
}
