package dev.kvserve.kvcache;

/**
 * The queries of one layer for consecutive tokens of one sequence, after RoPE: row {@code r} is at
 * position {@code firstPosition + r} and holds {@code heads*headDim} floats at {@code r*heads*headDim}.
 * Given to eviction rules and token selectors that decide before attention (HashEvict, Quest,
 * ClusterKV). Do not modify the array.
 */
public record QueryRows(float[] q, int rows, int firstPosition, int heads, int headDim) {

    public int offset(int row, int head) {
        return (row * heads + head) * headDim;
    }
}
