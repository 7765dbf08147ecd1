package io.bmtrain4j.zero;

import io.bmtrain4j.dist.CollectiveHandle;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.dist.ReduceOperation;
import io.bmtrain4j.internal.Native;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * A block's gradients on their way from autograd to the optimizer: collected from the
 * parameters' {@code .grad} into one flat buffer, reduce-scattered, and averaged into this rank's
 * shard gradient.
 *
 * <p>[Note: gradients land in the flat buffer] One reduce-scatter of the flat buffer serves the
 * whole block. The parameters start a backward with no {@code .grad}, so autograd hands over its
 * freshly computed gradient (and adds later contributions to it: a tied embedding and LM head, or
 * micro-batches accumulated in a standalone module), and {@link #collect()} copies each into the
 * flat buffer once, as FSDP2 copies into its reduce-scatter input. A checkpointed block collects
 * at the end of its own backward; a standalone module (the root) when backward is finished, so
 * its flat buffer does not exist through the loss, where memory peaks (pointing {@code .grad} at
 * views of a flat buffer allocated in forward cost 0.4 GiB there at 6.7B).
 */
public final class BlockGradients {
  private final FlatLayout layout;
  private final Communicator comm;
  private final TensorOptions options;
  private final long elementSize;
  private Tensor flat; // collecting; null between reductions
  private Tensor shardGrad; // this rank's averaged slice; null before the first reduction

  BlockGradients(FlatLayout layout, Communicator comm, TensorOptions options, long elementSize) {
    this.layout = layout;
    this.comm = comm;
    this.options = Native.own(options);
    this.elementSize = elementSize;
  }

  /**
   * Moves the gradients one backward left in the parameters' {@code .grad} into the flat buffer
   * (allocated on first use; added to a buffer already collecting) and unsets {@code .grad}, so
   * the next backward starts fresh again. A parameter without a gradient (frozen, or unused by
   * this call) contributes zeros.
   */
  void collect() {
    boolean fresh = flat == null;
    long padded = layout.paddedNumel();
    if (fresh) {
      flat = Native.own(torch.empty(new long[] {padded}, options, new MemoryFormatOptional()));
    }
    try (PointerScope handles = new PointerScope(); NoGradGuard noGrad = new NoGradGuard()) {
      if (fresh && padded > layout.numel()) {
        flat.narrow(0, layout.numel(), padded - layout.numel()).zero_();
      }
      for (FlatLayout.Member m : layout.members()) {
        Tensor region = flat.narrow(0, m.offset(), m.numel());
        Tensor g = m.tensor.grad();
        if (g.defined()) {
          Tensor gradient = g.reshape(-1);
          if (fresh) {
            region.copy_(gradient);
          } else {
            region.add_(gradient);
          }
          m.tensor.mutable_grad().put(new Tensor());
        } else if (fresh) {
          region.zero_();
        }
      }
    }
  }

  /** Unsets every parameter's {@code .grad} (a block's backward then starts fresh). */
  void clearParameterGradients() {
    try (PointerScope handles = new PointerScope()) {
      for (FlatLayout.Member m : layout.members()) {
        m.tensor.mutable_grad().put(new Tensor());
      }
    }
  }

  boolean collecting() {
    return flat != null;
  }

  /**
   * Starts the reduce-scatter of what was collected into this rank's shard gradient; null if
   * nothing was. The returned reduction must be completed before the next one of this block starts.
   */
  PendingReduction startReduction() {
    if (flat == null) {
      return null;
    }
    clearParameterGradients();
    Tensor input = flat;
    flat = null;
    if (comm.worldSize() == 1) {
      // [Note: world of one] The reduce-scatter is the identity: the flat buffer is the result.
      return new PendingReduction(this, CollectiveHandle.completed(), null, input);
    }
    Tensor out = Native.own(torch.empty(new long[] {layout.shardNumel()}, options, new MemoryFormatOptional()));
    return new PendingReduction(this, comm.reduceScatter(out, input, ReduceOperation.SUM), input, out);
  }

  /** Called by {@link PendingReduction#complete()}: averages over ranks, as BMTrain does, and accumulates. */
  void accumulate(Tensor reduced) {
    // In-place ops hand back new handles to the same tensor: scoped, so they pin nothing.
    try (PointerScope handles = new PointerScope()) {
      if (comm.worldSize() > 1) {
        reduced.div_(new Scalar((double) comm.worldSize()));
      }
      if (shardGrad == null) {
        shardGrad = reduced;
      } else {
        shardGrad.add_(reduced);
        reduced.close();
      }
    }
  }

  /** This rank's slice of the averaged gradient, or null before the first reduction. */
  public Tensor shardGrad() {
    return shardGrad;
  }

  /**
   * Drops the shard gradient (the optimizer's zero_grad), and zeroes gradients collected in the
   * flat buffer but not yet reduced, so nothing from before reaches the next reduction.
   */
  void zero() {
    if (shardGrad != null) {
      shardGrad.close();
      shardGrad = null;
    }
    if (flat != null) {
      flat.zero_();
    }
    clearParameterGradients(); // and what autograd left in .grad, not collected yet (a standalone module's)
  }

  /** Bytes of gradient storage held now: the shard gradient and a flat buffer collecting. */
  long bytes() {
    long elements = (shardGrad == null ? 0 : layout.shardNumel()) + (flat == null ? 0 : flat.numel());
    return elements * elementSize;
  }
}
