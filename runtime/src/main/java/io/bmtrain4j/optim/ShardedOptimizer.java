package io.bmtrain4j.optim;

import io.bmtrain4j.optim.lr.LearningRateTarget;
import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.zero.ParameterGroup;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;

/**
 * An optimizer over this rank's parameter slices ({@link ShardedParameter}): each rank updates
 * only what it owns, with gradients already averaged over ranks. Subclasses implement the update;
 * this class holds the hyperparameter groups, the learning rate the scheduler sets, and the step count.
 */
public abstract class ShardedOptimizer implements AutoCloseable, LearningRateTarget {
  protected final List<HyperparameterGroup> groups;
  private double lr;
  protected long steps;

  protected ShardedOptimizer(List<HyperparameterGroup> groups, double lr) {
    this.groups = List.copyOf(groups);
    this.lr = lr;
    Map<ShardedParameter, Boolean> seen = new IdentityHashMap<>();
    Map<String, Boolean> names = new LinkedHashMap<>();
    for (HyperparameterGroup g : groups) {
      for (ShardedParameter p : g.parameters()) {
        if (seen.put(p, true) != null || names.put(p.name(), true) != null) {
          throw new IllegalArgumentException("parameter " + p.name()
              + " appears twice in this optimizer's groups: give each parameter to one group");
        }
      }
    }
  }

  /** Every parameter of every group. */
  public List<ShardedParameter> parameters() {
    List<ShardedParameter> out = new ArrayList<>();
    for (HyperparameterGroup g : groups) {
      out.addAll(g.parameters());
    }
    return out;
  }

  /** {@code parameters} by the block whose shard holds them, blocks in first-seen order. */
  static Map<ParameterGroup, List<ShardedParameter>> byBlock(List<ShardedParameter> parameters) {
    Map<ParameterGroup, List<ShardedParameter>> out = new LinkedHashMap<>();
    for (ShardedParameter p : parameters) {
      out.computeIfAbsent(p.group(), g -> new ArrayList<>()).add(p);
    }
    return out;
  }

  /** Whether {@code parameters}, all of {@code block}, hold every parameter element of its shard on this rank. */
  static boolean coverShard(ParameterGroup block, List<ShardedParameter> parameters) {
    long covered = 0;
    for (ShardedParameter p : parameters) {
      covered += p.localLength();
    }
    return covered == block.layout().parameterElementsOnThisRank();
  }

  /** The hyperparameter groups, in the order given. */
  public List<HyperparameterGroup> groups() {
    return groups;
  }

  /** The base learning rate (each group multiplies it by its lrScale); schedulers set it. */
  public double learningRate() {
    return lr;
  }

  public void setLearningRate(double lr) {
    this.lr = lr;
  }

  public long steps() {
    return steps;
  }

  /** Drops every gradient (no communication). */
  public void zeroGrad() {
    for (ShardedParameter p : parameters()) {
      p.zeroBlockGradients();
    }
  }

  /**
   * One update from the current gradients divided by {@code gradScale} (the loss scale; 1 when
   * none). Gradients must be final: {@code OptimManager} completes the reductions first.
   */
  public abstract void step(double gradScale);

  /** Optimizer state by key: step counts, moments, master weights; values are tensors (scalars 0-dim). */
  public abstract Map<String, Tensor> stateDict();

  /** Restores {@link #stateDict()}; fails naming the key on a missing key or a shape mismatch. */
  public abstract void loadStateDict(Map<String, Tensor> state);

  /**
   * The keys of {@link #stateDict()} that hold one value per element of a parameter's slice on
   * this rank (moments, master weights), each with its parameter. A sharded checkpoint saves
   * these from every rank and, at another world size, reslices them like the parameter; every
   * other key is the same on every rank and is saved once. None unless an optimizer says so.
   */
  public Map<String, ShardedParameter> perElementKeys() {
    return Map.of();
  }

  /** The state-dict key {@code <parameter name>.<suffix>}: how optimizers name a parameter's state. */
  protected static String stateKey(ShardedParameter parameter, String suffix) {
    return parameter.name() + "." + suffix;
  }

  @Override
  public void close() {}
}
