package io.bmtrain4j.zero;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import java.util.List;

/** From a user's model object to its sharding runtime and parameter slices (what {@code Bmt}'s model helpers use). */
public final class ShardedModules {
  private ShardedModules() {}

  /** The runtime of a generated {@code Distributed*} instance; fails naming the class for anything else. */
  public static ShardedModuleRuntime runtimeOf(Object model) {
    if (!(model instanceof ShardedModule)) {
      throw new IllegalArgumentException(
          (model == null ? "null" : model.getClass().getName())
              + " is not a sharded model: construct the generated Distributed* class instead of the annotated one");
    }
    return ((ShardedModule) model).shardedRuntime();
  }

  /** This rank's parameter slices of the whole model, in state-dict order (what an optimizer updates). */
  public static List<ShardedParameter> parameters(Object model) {
    ShardedModuleRuntime root = runtimeOf(model);
    List<ShardedParameter> out = new ArrayList<>();
    for (ShardedModuleRuntime r : root.tree()) {
      ParameterGroup g = r.group();
      if (g == null) {
        continue;
      }
      for (FlatLayout.Member m : g.members()) {
        out.add(new ShardedParameter(r.keyPrefix() + m.name(), m, g, root));
      }
    }
    return out;
  }

  /**
   * Draws every deferred parameter of {@code model}: each rank only its own slices, keyed by
   * {@code seed} and the parameter's path, so the values are the same at every world size (see
   * {@link io.bmtrain4j.init.Initializer}).
   */
  public static void initParameters(Object model, long seed) {
    try (NoGradGuard g = new NoGradGuard()) {
      for (ShardedModuleRuntime r : runtimeOf(model).tree()) {
        ParameterGroup group = r.group();
        if (group == null) {
          continue;
        }
        for (FlatLayout.Member m : group.members()) {
          io.bmtrain4j.init.Initializer init = m.deferredInitializer();
          if (init == null) {
            continue;
          }
          String path = r.keyPrefix() + m.name();
          Overlap o = group.layout().overlap(m);
          if (!o.isEmpty()) {
            try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope()) {
              init.fillSlice(group.shard().forWriting().narrow(0, o.offsetInShard(), o.length()), m.shape(),
                  o.offsetInParameter(), seed, path);
            }
          }
          m.markInitialised();
        }
      }
    }
  }

  /**
   * Whole parameters (or whole averaged gradients: frozen parameters and those that received none
   * are absent), gathered on every rank: a collective, for tests, saving and inspection.
   */
  public static Map<String, Tensor> gatherWhole(Object model, boolean gradients) {
    ShardedModuleRuntime root = runtimeOf(model);
    if (gradients) {
      root.finishBackward();
    }
    Map<String, Tensor> out = new LinkedHashMap<>();
    for (ShardedModuleRuntime r : root.tree()) {
      ParameterGroup g = r.group();
      if (g == null) {
        continue;
      }
      Tensor local = gradients ? g.shardGrad() : g.shard().forReading();
      if (local == null) {
        continue;
      }
      try (NoGradGuard ng = new NoGradGuard()) {
        Tensor full = torch.empty(new long[] {g.layout().paddedNumel()}, local.options(), new MemoryFormatOptional());
        g.communicator().allGather(full, local.contiguous()).await();
        for (FlatLayout.Member m : g.members()) {
          if (gradients && !m.requiresGrad()) {
            continue;
          }
          out.put(r.keyPrefix() + m.name(), full.narrow(0, m.offset(), m.numel()).view(m.shape()).clone());
        }
        full.close();
      }
    }
    return out;
  }

  /** What {@code model} holds on this rank now, summed over its blocks. */
  public static HeldMemory heldMemory(Object model) {
    HeldMemory total = HeldMemory.NONE;
    for (ShardedModuleRuntime r : runtimeOf(model).tree()) {
      if (r.group() != null) {
        total = total.plus(r.group().heldMemory());
      }
    }
    return total;
  }
}
