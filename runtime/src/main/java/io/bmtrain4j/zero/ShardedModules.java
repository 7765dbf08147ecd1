package io.bmtrain4j.zero;

import java.util.ArrayList;
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
      for (ParameterGroup.Member m : g.members()) {
        out.add(new ShardedParameter(r.keyPrefix() + m.name(), m, g, root));
      }
    }
    return out;
  }
}
