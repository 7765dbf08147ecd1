package io.bmtrain4j.dist;

import io.bmtrain4j.autograd.CustomBackward;
import java.util.List;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * Collectives that autograd sees through ({@code Bmt.allGather} and friends): each runs forward
 * on {@code comm} and registers, through {@link CustomBackward}, the collective its gradient needs.
 */
public final class DifferentiableCollectives {
  private DifferentiableCollectives() {}

  /** Differentiable all-gather: a tensor of shape {@code [world, ...x.shape]}; backward reduce-scatters (sums). */
  public static Tensor allGather(Communicator comm, Tensor x) {
    long[] shape = x.sizes().vec().get();
    long[] outShape = new long[shape.length + 1];
    outShape[0] = comm.worldSize();
    System.arraycopy(shape, 0, outShape, 1, shape.length);
    Tensor out;
    try (NoGradGuard g = new NoGradGuard()) {
      Tensor in = x.detach().contiguous();
      out = torch.empty(outShape, in.options(), new MemoryFormatOptional());
      comm.allGather(out, in).await();
    }
    return CustomBackward.apply(List.of(x), List.of(out), grads -> {
      Tensor go = grads.get(0);
      if (go == null) {
        return java.util.Collections.singletonList(null);
      }
      Tensor gi = torch.empty(shape, go.options(), new MemoryFormatOptional());
      comm.reduceScatter(gi, go.contiguous(), ReduceOperation.SUM).await();
      return List.of(gi);
    }).get(0);
  }

  /** Differentiable all-reduce (SUM or AVG); backward all-reduces the gradient the same way. */
  public static Tensor allReduce(Communicator comm, Tensor x, ReduceOperation op) {
    if (op != ReduceOperation.SUM && op != ReduceOperation.AVG) {
      throw new IllegalArgumentException("allReduce is differentiable for SUM and AVG only, got " + op);
    }
    Tensor out;
    try (NoGradGuard g = new NoGradGuard()) {
      out = x.detach().contiguous().clone();
      comm.allReduce(out, op).await();
    }
    return CustomBackward.apply(List.of(x), List.of(out), grads -> {
      Tensor go = grads.get(0);
      if (go == null) {
        return java.util.Collections.singletonList(null);
      }
      Tensor gi = go.contiguous().clone();
      comm.allReduce(gi, op).await();
      return List.of(gi);
    }).get(0);
  }

  /** Differentiable reduce-scatter along dim 0 (size divisible by the world size); backward all-gathers. */
  public static Tensor reduceScatter(Communicator comm, Tensor x, ReduceOperation op) {
    long[] shape = x.sizes().vec().get();
    if (shape.length == 0 || shape[0] % comm.worldSize() != 0) {
      throw new IllegalArgumentException("reduceScatter needs dim 0 divisible by the world size ("
          + comm.worldSize() + "), got shape " + java.util.Arrays.toString(shape));
    }
    long[] outShape = shape.clone();
    outShape[0] /= comm.worldSize();
    Tensor out;
    try (NoGradGuard g = new NoGradGuard()) {
      out = torch.empty(outShape, x.options(), new MemoryFormatOptional());
      comm.reduceScatter(out, x.detach().contiguous(), op).await();
    }
    return CustomBackward.apply(List.of(x), List.of(out), grads -> {
      Tensor go = grads.get(0);
      if (go == null) {
        return java.util.Collections.singletonList(null);
      }
      Tensor gi = torch.empty(shape, go.options(), new MemoryFormatOptional());
      comm.allGather(gi, go.contiguous()).await();
      if (op == ReduceOperation.AVG) {
        gi.div_(new org.bytedeco.pytorch.Scalar((double) comm.worldSize()));
      }
      return List.of(gi);
    }).get(0);
  }

  /** Differentiable broadcast from {@code root}; backward sums the gradients into the root's input. */
  public static Tensor broadcast(Communicator comm, Tensor x, int root) {
    Tensor out;
    try (NoGradGuard g = new NoGradGuard()) {
      out = x.detach().contiguous().clone();
      comm.broadcast(out, root).await();
    }
    return CustomBackward.apply(List.of(x), List.of(out), grads -> {
      Tensor go = grads.get(0);
      if (go == null) {
        return java.util.Collections.singletonList(null);
      }
      Tensor gi = go.contiguous().clone();
      comm.allReduce(gi, ReduceOperation.SUM).await();
      if (comm.rank() != root) {
        gi.zero_();
      }
      return List.of(gi);
    }).get(0);
  }
}
