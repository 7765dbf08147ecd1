package io.bmtrain4j.examples;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedModuleRuntime;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Adam;
import org.bytedeco.pytorch.AdamOptions;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;

/**
 * libtorch's Adam driven over this rank's parameter shards: each rank updates only the slice it
 * owns, with the gradients averaged over ranks. (The project's own optimizers, with mixed
 * precision, offload and loss scaling, are the optimizer issue's.)
 */
final class ShardAdam implements AutoCloseable {
  private final Object model;
  private final List<ParameterGroup> groups = new ArrayList<>();
  private final TensorVector shards = new TensorVector();
  private final Adam adam;

  ShardAdam(Object model, double lr) {
    this.model = model;
    for (ShardedModuleRuntime r : Bmt.runtimeOf(model).tree()) {
      if (r.group() != null) {
        groups.add(r.group());
        shards.push_back(r.group().shard());
      }
    }
    this.adam = new Adam(shards, new AdamOptions(lr));
  }

  void zeroGrad() {
    for (ParameterGroup g : groups) {
      g.zeroShardGrad();
      g.shard().mutable_grad().put(new Tensor());
    }
  }

  /** Completes the pending gradient reductions, then updates every shard. */
  void step() {
    Bmt.finishBackward(model);
    for (ParameterGroup g : groups) {
      if (g.shardGrad() != null) {
        g.shard().mutable_grad().put(g.shardGrad());
      }
    }
    adam.step();
  }

  @Override
  public void close() {
    adam.close();
    shards.close();
  }
}
