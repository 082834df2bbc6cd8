package dev.kvserve.kvcache.format;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.policy.PolicyComponent;

/**
 * How a policy encodes K and V in the cache's blocks: full precision (fp32, fp16) or a quantizer.
 * A format is an immutable value parsed from a spec; {@link #bind} checks it against a model and
 * gives the codecs that read and write blocks of that model.
 *
 * <p>A block holds {@code blockTokens} slots of one layer and one KV head: keys, values and every
 * scale, zero point, outlier or side value the format needs to decode them, all inside the block's
 * bytes so the pool's byte budget counts exactly what is stored. See {@link BlockCodec}.
 */
public interface KvStorageFormat extends PolicyComponent {

    /**
     * Validates this format for {@code geometry} (e.g. a group size must divide the head size) and
     * returns its codecs. Called once per cache manager and policy; the binding is shared by every
     * sequence of that policy and must be thread-safe (read-only after construction).
     *
     * @throws IllegalArgumentException naming the parameter and the geometry when it does not fit
     */
    FormatBinding bind(KvGeometry geometry, int blockTokens);
}
