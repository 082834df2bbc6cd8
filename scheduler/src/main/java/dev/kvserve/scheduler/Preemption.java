package dev.kvserve.scheduler;

/**
 * What the scheduler does with a running sequence it must stop to make room in the KV pool (vLLM's
 * {@code preemption_mode}).
 */
public enum Preemption {
    /** Free its blocks; on readmission prefill prompt and generated tokens again. */
    RECOMPUTE,
    /**
     * Move its blocks to the lower tiers of its KV policy (host RAM, SSD: an {@code offload} tier) and
     * bring them back on readmission, keeping everything computed. Sequences whose policy has no lower
     * tier, or whose blocks the lower tiers cannot take, are recomputed. The default.
     */
    SWAP
}
