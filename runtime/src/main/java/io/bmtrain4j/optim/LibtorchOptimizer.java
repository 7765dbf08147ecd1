package io.bmtrain4j.optim;

import io.bmtrain4j.ShardedParameter;
import io.bmtrain4j.zero.ParameterGroup;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Optimizer;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;

/**
 * Drives any libtorch optimizer the Bytedeco mapping exposes ({@code SGD}, {@code AdamW}, ...)
 * over this rank's shards: the optimizer is built over the blocks' shard tensors, whose
 * {@code .grad} is set to the averaged shard gradient before each step. Its per-element state
 * therefore covers whole shards; frozen parameters inside a shard receive a zero gradient.
 * Learning-rate schedules set {@code lr} through {@code setLearningRate}.
 */
public final class LibtorchOptimizer extends ShardedOptimizer {
  private final List<ParameterGroup> shardGroups = new ArrayList<>();
  private final TensorVector shards = new TensorVector();
  private final Optimizer optimizer;
  private final java.util.function.DoubleConsumer setLr;

  /**
   * {@code factory} builds the libtorch optimizer over the shard tensors, e.g.
   * {@code v -> new SGD(v, new SGDOptions(0.1))}; {@code setLr} applies a scheduler's rate to it
   * (for example {@code lr -> options.lr().put(lr)}), or null when no scheduler is used.
   */
  public LibtorchOptimizer(List<ShardedParameter> parameters, double lr, Function<TensorVector, Optimizer> factory,
      java.util.function.DoubleConsumer setLr) {
    super(List.of(ParamGroup.of(parameters, 0)), lr);
    Map<ParameterGroup, Boolean> seen = new IdentityHashMap<>();
    for (ShardedParameter p : parameters) {
      if (seen.put(p.group(), true) == null) {
        shardGroups.add(p.group());
        p.group().keepShard(); // updated in place here: never freed and rebuilt from another optimizer's masters
        shards.push_back(p.group().shard());
      }
    }
    this.optimizer = factory.apply(shards);
    this.setLr = setLr;
  }

  @Override
  public void setLearningRate(double lr) {
    super.setLearningRate(lr);
    if (setLr != null) {
      setLr.accept(lr);
    }
  }

  @Override
  public void step(double gradScale) {
    steps++;
    try (NoGradGuard g = new NoGradGuard()) {
      for (ParameterGroup group : shardGroups) {
        Tensor grad = group.shardGrad();
        Tensor shard = group.shard();
        if (grad == null) {
          shard.mutable_grad().put(new Tensor());
        } else {
          shard.mutable_grad().put(gradScale == 1.0 ? grad : grad.div(new Scalar(gradScale)));
        }
      }
    }
    optimizer.step();
  }

  /** Only the step count: libtorch's optimizers serialise their own state through their archives. */
  @Override
  public Map<String, Tensor> stateDict() {
    return Map.of("steps", org.bytedeco.pytorch.global.torch.tensor(new long[] {steps}).reshape(new long[] {}));
  }

  @Override
  public void loadStateDict(Map<String, Tensor> state) {
    steps = StateDicts.require(state, "steps", new long[] {}).item().toLong();
  }

  @Override
  public void close() {
    optimizer.close();
    shards.close();
  }
}
