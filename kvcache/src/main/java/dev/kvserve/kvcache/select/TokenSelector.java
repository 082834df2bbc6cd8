package dev.kvserve.kvcache.select;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.Lanes;
import dev.kvserve.kvcache.policy.PolicyComponent;

/**
 * Sparse recall: which of the cached tokens a step attends to (Quest pages, ClusterKV clusters,
 * offload working sets). Nothing is deleted; unselected tokens stay cached and may be chosen later.
 */
public interface TokenSelector extends PolicyComponent {

    SelectorState open(KvGeometry geometry, int blockTokens);

    default Lanes lanes() {
        return Lanes.NONE;
    }
}
