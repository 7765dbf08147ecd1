package io.bmtrain4j.zero;

import org.bytedeco.pytorch.Tensor;

/**
 * This rank's part of one parameter: the slice of its block's shard that falls inside the
 * parameter (possibly empty), and the matching slice of the averaged gradient. This is what an
 * optimizer updates (in place) on each rank; together the ranks' slices make the whole parameter.
 */
public final class ShardedParameter {
  private final String name;
  private final FlatLayout.Member member;
  private final ParameterGroup group;
  private final ShardedModuleRuntime root;
  private final long localStart;
  private final long localLength;
  private final long offsetInParameter;

  ShardedParameter(String name, FlatLayout.Member member, ParameterGroup group, ShardedModuleRuntime root) {
    this.name = name;
    this.member = member;
    this.group = group;
    this.root = root;
    Overlap o = group.layout().overlap(member);
    this.offsetInParameter = o.offsetInParameter();
    this.localStart = o.offsetInShard();
    this.localLength = o.length();
  }

  /** The state-dict key: the field path, such as {@code layers.3.wq} or {@code ln1.weight}. */
  public String name() {
    return name;
  }

  public long[] shape() {
    return member.shape();
  }

  public boolean requiresGrad() {
    return member.requiresGrad();
  }

  /** The block's parameter group this parameter lives in (its shard and shard gradient). */
  public ParameterGroup group() {
    return group;
  }

  /** Where this rank's slice starts inside the flattened parameter. */
  public long offsetInParameter() {
    return offsetInParameter;
  }

  /**
   * This parameter's slice of {@code groupFlat}, a tensor laid out like its group's shard (a
   * gradient cast to fp32 once per block, say): a view, no copy.
   */
  public Tensor sliceOf(Tensor groupFlat) {
    return groupFlat.narrow(0, localStart, localLength);
  }

  /** How many of this parameter's elements this rank holds (0 when its shard does not meet it). */
  public long localLength() {
    return localLength;
  }

  /** As {@link #local()}, for reading only (saving, inspecting): valid until the next optimizer step. */
  public Tensor readLocal() {
    return group.shard().forReading().narrow(0, localStart, localLength);
  }

  /** This rank's slice of the flattened parameter (a view into the shard; may have 0 elements), for writing. */
  public Tensor local() {
    return group.shard().forWriting().narrow(0, localStart, localLength);
  }

  /**
   * Says a loader has written this parameter's values (every rank its own slice): a parameter
   * declared with {@code Bmt.parameter} then needs no {@code Bmt.initParameters}.
   */
  public void markLoaded() {
    member.markInitialised();
  }

  /**
   * This rank's slice of the gradient, averaged over ranks; null if the parameter is frozen or has
   * none. The first call after a forward finishes that step's backward (reductions still pending:
   * a collective, so call it on every rank); later calls only read.
   */
  public Tensor grad() {
    root.finishBackward();
    if (!member.requiresGrad() || group.shardGrad() == null) {
      return null;
    }
    return group.shardGrad().narrow(0, localStart, localLength);
  }

  /** Drops the gradients of this parameter's whole block, not only its own (the optimizer's zero_grad); no communication. */
  public void zeroBlockGradients() {
    group.gradients().zero();
  }

  @Override
  public String toString() {
    return name + java.util.Arrays.toString(member.shape()) + " local " + localLength;
  }
}
