package dev.kvserve.kvcache.policy;

import java.util.List;

/**
 * Adds methods to {@link PolicyRegistry} through {@link java.util.ServiceLoader}: implement this,
 * list the class in {@code META-INF/services/dev.kvserve.kvcache.policy.KvMethodProvider}, and the
 * methods become available to {@code KvCachePolicy.parse}. Modules may instead call
 * {@link PolicyRegistry#register} directly before parsing.
 */
public interface KvMethodProvider {

    List<MethodDef> methods();
}
