package io.bmtrain4j.optim;

import io.bmtrain4j.internal.Native;
import io.bmtrain4j.zero.LocalShard;
import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedParameter;
import java.util.ArrayList;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The fp32 weights an optimizer updates, one per parameter slice on this rank, and how they stay
 * in step with the blocks' shards. An fp16/bf16 parameter gets a separate fp32 master, whose
 * rounding is the parameter; an fp32 parameter whose state lives beside it is its own master (an
 * owned view of its shard, updated in place). Where the masters live is the {@link
 * StatePlacement}'s choice; offloaded masters are always separate copies.
 *
 * <p>An optimizer over masters (Adam today; an SGD or Lion would do the same):
 *
 * <ul>
 *   <li>before updating some blocks, calls {@link #adoptExternalWrites(Collection)} on them;
 *   <li>updates {@link #of} each parameter in place;
 *   <li>then calls {@link #updated}, which copies the rounded masters into the shards that are
 *       not rebuilt and marks rebuilt shards stale;
 *   <li>saves with {@link #adoptExternalWrites()} first, then {@link #save} per parameter, and
 *       loads with {@link #load} per parameter, then {@link #loaded()};
 *   <li>lists {@link #perElementKeys()} among its own, and closes this when it closes.
 * </ul>
 *
 * <p>Separate masters beside their shard rebuild every block they wholly cover (LocalShard's
 * [Note: a shard the optimizer can rebuild]); writes into a shard from outside are taken into the
 * masters before the next step or save (LocalShard's [Note: writes into the shard]).
 */
final class MasterWeights implements AutoCloseable {
  /** The state-dict key suffix of a separate master, after the parameter's name. */
  static final String STATE_KEY = "master";

  /** A parameter's fp32 weights: a copy, or (not separate) the owned view of its fp32 shard. */
  private record Master(Tensor fp32, boolean separate) {}

  private final Map<ShardedParameter, Master> masters = new IdentityHashMap<>();
  /** The parameters with separate masters, by block, and each block's shard version they reflect. */
  private final Map<ParameterGroup, List<ShardedParameter>> separateByBlock = new LinkedHashMap<>();
  private final Map<ParameterGroup, Long> versionSeen = new IdentityHashMap<>();
  /** The sources offered for blocks the masters can rebuild: see offerShardSources. */
  private final Map<ParameterGroup, LocalShard.ShardSource> sources = new IdentityHashMap<>();
  /** Where the masters live: it copies their rounding into the shards (see updated). */
  private final StatePlacement placement;

  /** Masters for {@code parameters}, made from their current values, where {@code placement} keeps state. */
  MasterWeights(List<ShardedParameter> parameters, StatePlacement placement) {
    this.placement = placement;
    try (PointerScope scope = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
      for (ShardedParameter p : parameters) {
        masters.put(p, newMaster(p, placement));
      }
    }
    // A block's parameters share its dtype, so they have separate masters all or none.
    ShardedOptimizer.byBlock(parameters).forEach((block, params) -> {
      if (masters.get(params.get(0)).separate()) {
        separateByBlock.put(block, params);
      }
    });
    if (placement.mastersRebuildShards()) {
      offerShardSources();
    }
    separateByBlock.keySet().forEach(this::noteVersionSeen);
  }

  private static Master newMaster(ShardedParameter p, StatePlacement placement) {
    boolean fp32 = p.group().dtype().value == torch.ScalarType.Float.value;
    if (fp32 && placement.fp32ShardIsItsOwnMaster()) {
      return new Master(Native.own(p.local()), false); // an fp32 shard is its own master, updated in place
    }
    // The view is closed at once: left to the GC, it pinned the shard's first storage (2 bytes
    // per parameter, 2.45 GiB at 1.3B) after the shard had been freed for rebuilding.
    Tensor local = p.readLocal();
    Tensor copy = Native.own(local.to(placement.fp32Options(p.group().device()), false, true, new MemoryFormatOptional()));
    local.close();
    return new Master(copy, true);
  }

  /** The fp32 weights the update writes for {@code parameter}, in place. */
  Tensor of(ShardedParameter parameter) {
    return masters.get(parameter).fp32();
  }

  /** Whether {@code parameter}'s master is a copy of its own (saved with the optimizer's state) rather than its shard. */
  private boolean isSeparate(ShardedParameter parameter) {
    return masters.get(parameter).separate();
  }

  /** The masters now reflect everything written into {@code block}'s shard so far. */
  private void noteVersionSeen(ParameterGroup block) {
    versionSeen.put(block, block.shard().version());
  }

  /**
   * A block all of whose elements on this rank have device masters here needs no low-precision
   * shard between gathers: it is rebuilt from the masters (LocalShard's [Note: a shard the
   * optimizer can rebuild]), as FSDP2 casts its fp32 shards at each gather. Blocks shared with
   * another optimizer, offloaded masters and fp32 parameters keep their shard.
   */
  private void offerShardSources() {
    for (Map.Entry<ParameterGroup, List<ShardedParameter>> e : separateByBlock.entrySet()) {
      ParameterGroup block = e.getKey();
      List<ShardedParameter> params = e.getValue();
      if (!ShardedOptimizer.coverShard(block, params)) {
        continue;
      }
      LocalShard.ShardSource source = shard -> {
        List<Tensor> slices = new ArrayList<>();
        List<Tensor> fp32 = new ArrayList<>();
        for (ShardedParameter p : params) {
          if (p.localLength() > 0) {
            slices.add(p.sliceOf(shard));
            fp32.add(of(p));
          }
        }
        MultiTensorOps.copy(slices, fp32); // rounds fp32 to the shard's dtype
      };
      if (block.shard().offerSource(source)) {
        sources.put(block, source);
      }
    }
  }

  /** Whether these masters rebuild {@code block}'s shard now (another optimizer over it turns that off). */
  private boolean rebuilds(ParameterGroup block) {
    LocalShard.ShardSource source = sources.get(block);
    return source != null && block.shard().rebuiltFrom(source);
  }

  /** {@link #adoptExternalWrites(Collection)} for every block with separate masters: before a state save. */
  void adoptExternalWrites() {
    adoptExternalWrites(separateByBlock.keySet());
  }

  /**
   * A shard handed out for writing since the masters last synchronised with it (a loader, an
   * initialiser, a user, another optimizer) may hold values the masters lack. Every element that
   * differs from its master's rounding was written: the master takes it, so the update starts
   * from it and neither the copy-back nor a rebuild undoes it, as with an optimizer that updates
   * the parameter in place. Elements that were only read keep their master's full precision.
   * Offloaded masters compare on the host.
   */
  void adoptExternalWrites(Collection<ParameterGroup> blocks) {
    for (ParameterGroup block : blocks) {
      List<ShardedParameter> params = separateByBlock.get(block);
      Long seen = versionSeen.get(block);
      if (params == null || seen == null || seen == block.shard().version()) {
        continue;
      }
      try (PointerScope scope = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
        Tensor shard = block.shard().forReading();
        for (ShardedParameter p : params) {
          if (p.localLength() > 0) {
            Tensor master = of(p);
            Tensor slice = p.sliceOf(shard);
            Tensor current = slice.is_cuda() && !master.is_cuda() ? slice.cpu() : slice; // offloaded masters: on the host
            master.copy_(torch.where(current.eq(master.to(current.scalar_type())), master, current.to(torch.ScalarType.Float)));
          }
        }
      }
      noteVersionSeen(block);
    }
  }

  /**
   * The update has written {@code parameters}' masters: their rounding is copied into the shards
   * the masters do not rebuild (host to device when offloaded), and rebuilt shards are marked
   * stale, to be rebuilt at their next gather.
   */
  void updated(List<ShardedParameter> parameters) {
    List<ShardedParameter> rounded = new ArrayList<>();
    List<Tensor> roundedDestinations = new ArrayList<>();
    List<Tensor> roundedSources = new ArrayList<>();
    for (ShardedParameter p : parameters) {
      if (isSeparate(p) && !rebuilds(p.group())) {
        // Written through forOptimizerUpdate: this optimizer's own update, not a write another
        // optimizer's masters lack (LocalShard's [Note: writes into the shard]).
        rounded.add(p);
        roundedDestinations.add(p.sliceOf(p.group().shard().forOptimizerUpdate()));
        roundedSources.add(of(p));
      }
    }
    placement.writeRounded(rounded, roundedDestinations, roundedSources);
    for (ParameterGroup block : ShardedOptimizer.byBlock(parameters).keySet()) {
      if (rebuilds(block)) {
        block.shardSourceUpdated();
      }
    }
  }

  /** Puts {@code parameter}'s separate master into a state dict; an fp32 shard that is its own master is saved with the model. */
  void save(ShardedParameter parameter, Map<String, Tensor> out) {
    if (isSeparate(parameter)) {
      out.put(ShardedOptimizer.stateKey(parameter, STATE_KEY), of(parameter));
    }
  }

  /**
   * Restores {@code parameter}'s separate master from a state dict, and writes its rounding into
   * a shard the masters do not rebuild. Call {@link #loaded()} once every parameter is loaded.
   */
  void load(ShardedParameter parameter, Map<String, Tensor> state) {
    if (!isSeparate(parameter)) {
      return;
    }
    try (PointerScope scope = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
      Tensor master = of(parameter);
      master.copy_(StateDicts.require(state, ShardedOptimizer.stateKey(parameter, STATE_KEY), new long[] {master.numel()}));
      if (!rebuilds(parameter.group())) {
        parameter.sliceOf(parameter.group().shard().forOptimizerUpdate()).copy_(master); // its own parameter: see updated
      }
    }
  }

  /** After {@link #load}: rebuilt shards are rebuilt from the loaded masters at their next gather, and every shard is in step. */
  void loaded() {
    for (ParameterGroup block : sources.keySet()) {
      if (rebuilds(block)) {
        block.shardSourceUpdated();
      }
    }
    separateByBlock.keySet().forEach(this::noteVersionSeen);
  }

  /** The state-dict keys of the separate masters, each with its parameter: one value per slice element. */
  Map<String, ShardedParameter> perElementKeys() {
    Map<String, ShardedParameter> out = new LinkedHashMap<>();
    for (Map.Entry<ParameterGroup, List<ShardedParameter>> e : separateByBlock.entrySet()) {
      for (ShardedParameter p : e.getValue()) {
        out.put(ShardedOptimizer.stateKey(p, STATE_KEY), p);
      }
    }
    return out;
  }

  /** Hands rebuilt shards back to the model (it outlives the optimizer) and frees the masters. */
  @Override
  public void close() {
    // Rebuilt shards are made whole again and kept from now on.
    sources.forEach((block, source) -> block.shard().withdrawSource(source));
    sources.clear();
    for (Master m : masters.values()) {
      m.fp32().close(); // a copy, or the owned view of an fp32 shard
    }
    masters.clear();
  }
}
