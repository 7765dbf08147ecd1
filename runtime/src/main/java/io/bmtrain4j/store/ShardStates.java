package io.bmtrain4j.store;

import io.bmtrain4j.dist.DistContext;
import io.bmtrain4j.optim.StateDicts;
import io.bmtrain4j.zero.ShardedModuleRuntime;
import io.bmtrain4j.zero.ShardedModules;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * This rank's shards as a state dict (one flat tensor per block, keyed by the block's path), with
 * the world size and rank they belong to: with the optimizer manager's state dict, what an exact
 * resume at the same world size needs. {@link ShardedCheckpoint} reshards to other world sizes.
 */
public final class ShardStates {
  private ShardStates() {}

  public static Map<String, Tensor> stateDict(Object model) {
    DistContext ctx = DistContext.current();
    Map<String, Tensor> out = new LinkedHashMap<>();
    out.put("[world_size]", torch.tensor(new long[] {ctx.worldSize()}).reshape(new long[] {}));
    out.put("[rank]", torch.tensor(new long[] {ctx.rank()}).reshape(new long[] {}));
    for (ShardedModuleRuntime r : ShardedModules.runtimeOf(model).tree()) {
      if (r.group() != null) {
        out.put(r.keyPrefix() + "[shard]", r.group().shard().forReading().clone()); // a copy: the shard may be freed at the next step
      }
    }
    return out;
  }

  /** Loads {@link #stateDict} saved by the same rank of a job of the same world size. */
  public static void load(Object model, Map<String, Tensor> state) {
    DistContext ctx = DistContext.current();
    long world = StateDicts.require(state, "[world_size]", new long[] {}).item().toLong();
    long savedRank = StateDicts.require(state, "[rank]", new long[] {}).item().toLong();
    if (world != ctx.worldSize() || savedRank != ctx.rank()) {
      throw new IllegalArgumentException("these shards were saved by rank " + savedRank + " of " + world
          + ", but this is rank " + ctx.rank() + " of " + ctx.worldSize() + ": load each rank's own file at the same world size");
    }
    try (NoGradGuard g = new NoGradGuard()) {
      for (ShardedModuleRuntime r : ShardedModules.runtimeOf(model).tree()) {
        if (r.group() != null) {
          Tensor saved = StateDicts.require(state, r.keyPrefix() + "[shard]", new long[] {r.group().shardNumel()});
          r.group().shard().forWriting().copy_(saved);
        }
      }
    }
  }
}
