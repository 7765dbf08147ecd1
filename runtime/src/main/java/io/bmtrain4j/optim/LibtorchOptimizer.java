package io.bmtrain4j.optim;

import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.zero.ParameterGroup;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Optimizer;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;

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

  /** Blocks this optimizer shares with another: which of their shard's elements are its own. */
  private final Map<ParameterGroup, Tensor> ownedElements = new IdentityHashMap<>();

  /**
   * {@code factory} builds the libtorch optimizer over the shard tensors, e.g.
   * {@code v -> new SGD(v, new SGDOptions(0.1))}; {@code setLr} applies a scheduler's rate to it
   * (for example {@code lr -> options.lr().put(lr)}), or null when no scheduler is used.
   */
  public LibtorchOptimizer(List<ShardedParameter> parameters, double lr, Function<TensorVector, Optimizer> factory,
      java.util.function.DoubleConsumer setLr) {
    super(List.of(HyperparameterGroup.of(parameters, 0)), lr);
    for (Map.Entry<ParameterGroup, List<ShardedParameter>> e : byBlock(parameters).entrySet()) {
      ParameterGroup block = e.getKey();
      shardGroups.add(block);
      block.shard().pin(); // updated in place here: never freed and rebuilt from another optimizer's masters
      shards.push_back(block.shard().forWriting());
      if (!coverShard(block, e.getValue())) { // the block's other parameters belong to another optimizer: see step
        Tensor mask = io.bmtrain4j.internal.Native.own(torch.zeros(new long[] {block.shardNumel()},
            block.shard().forReading().options().dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Bool))));
        try (PointerScope scope = new PointerScope()) {
          for (ShardedParameter p : e.getValue()) {
            p.sliceOf(mask).fill_(new Scalar(1));
          }
        }
        ownedElements.put(block, mask);
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
        Tensor shard = group.shard().forOptimizerUpdate(); // its own parameters' update: see LocalShard's [Note: writes into the shard]
        if (grad == null) {
          shard.mutable_grad().put(new Tensor());
        } else {
          shard.mutable_grad().put(gradScale == 1.0 ? grad : grad.div(new Scalar(gradScale)));
        }
      }
    }
    // libtorch's optimizer steps whole shards; a block shared with another optimizer must keep
    // that optimizer's elements (weight decay or momentum would move them even without a gradient).
    Map<ParameterGroup, Tensor> others = new IdentityHashMap<>();
    try (PointerScope scope = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
      for (Map.Entry<ParameterGroup, Tensor> e : ownedElements.entrySet()) {
        others.put(e.getKey(), e.getKey().shard().forReading().clone());
      }
      optimizer.step();
      for (Map.Entry<ParameterGroup, Tensor> e : others.entrySet()) {
        Tensor shard = e.getKey().shard().forOptimizerUpdate();
        shard.copy_(torch.where(ownedElements.get(e.getKey()), shard, e.getValue()));
      }
    }
  }

  /** Only the step count: libtorch's optimizers serialise their own state through their archives. */
  @Override
  public Map<String, Tensor> stateDict() {
    return Map.of("steps", torch.tensor(new long[] {steps}).reshape(new long[] {}));
  }

  @Override
  public void loadStateDict(Map<String, Tensor> state) {
    steps = StateDicts.require(state, "steps", new long[] {}).item().toLong();
  }

  @Override
  public void close() {
    ownedElements.values().forEach(Tensor::close);
    ownedElements.clear();
    optimizer.close();
    shards.close();
  }
}
