package io.bmtrain4j.zero;

/**
 * Implemented by every class the processor generates ({@code Distributed<Name>}): gives the
 * runtime the instance's sharding state. Users never implement it by hand.
 */
public interface ShardedModule {
  ShardedModuleRuntime shardedRuntime();
}
