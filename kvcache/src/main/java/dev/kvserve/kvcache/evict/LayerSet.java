package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.policy.ParamSpec;
import java.util.Arrays;
import java.util.stream.Collectors;

/**
 * A set of layers written in a spec as {@code none} or indices joined with {@code ;}, where a negative
 * index counts from the last layer ({@code 0;1;-1} is the first two and the last layer, D2O's
 * uncompressed layers). Resolved against a model's layer count when a sequence opens.
 */
public record LayerSet(int[] indices) {

    public static final LayerSet NONE = new LayerSet(new int[0]);

    public LayerSet {
        indices = indices.clone();
    }

    public static LayerSet parse(String s) {
        String t = s.trim();
        if (t.equals("none")) return NONE;
        String[] parts = t.split(";", -1);
        int[] idx = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            try {
                idx[i] = Integer.parseInt(parts[i].trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("'" + parts[i] + "' is not a layer index");
            }
        }
        return new LayerSet(idx);
    }

    /** Spec parameter holding a layer set. */
    public static ParamSpec param(String name, String defaultValue) {
        return new ParamSpec(name, "'none' or layer indices joined with ';', negative counting from the last (0;1;-1)",
                defaultValue, LayerSet::parse, v -> v.toString());
    }

    /**
     * Membership per layer of a model with {@code layers} layers.
     *
     * @throws IllegalArgumentException when an index is outside the model
     */
    public boolean[] resolve(int layers) {
        boolean[] in = new boolean[layers];
        for (int i : indices) {
            int l = i < 0 ? layers + i : i;
            if (l < 0 || l >= layers) {
                throw new IllegalArgumentException("layer " + i + " does not exist in a model of " + layers + " layers");
            }
            in[l] = true;
        }
        return in;
    }

    @Override
    public String toString() {
        if (indices.length == 0) return "none";
        return Arrays.stream(indices).mapToObj(Integer::toString).collect(Collectors.joining(";"));
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LayerSet s && Arrays.equals(s.indices, indices);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(indices);
    }
}
