package io.bmtrain4j.nn;

import io.bmtrain4j.autograd.CustomBackward;
import java.util.Arrays;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The LM head and its cross-entropy in one, chunk by chunk of rows: {@code loss(hidden @ weightᵀ,
 * targets)} without the whole {@code [tokens, vocab]} logits ever existing. At a 128k vocabulary
 * those are 0.5 MiB per token in fp32 (4 GiB for 8 x 1024 tokens), with the softmax's copy in
 * backward on top. Forward keeps only each row's loss terms; backward recomputes one chunk's
 * logits at a time, turns them into the gradient of the loss, and multiplies it straight into the
 * gradients of {@code hidden} and {@code weight}. Same result as {@code cross_entropy} on the
 * logits (log-softmax in fp32), with {@code ignoreIndex}, class weights, and mean or sum.
 */
public final class ChunkedCrossEntropy {
  private ChunkedCrossEntropy() {}

  public enum Reduction { MEAN, SUM }

  /**
   * @param ignoreIndex targets equal to it count for nothing (PyTorch's default: -100)
   * @param classWeights {@code [vocab]} weight of each target class, or null for 1
   * @param chunkRows rows whose logits exist at once
   */
  public record Options(long ignoreIndex, Tensor classWeights, Reduction reduction, long chunkRows) {
    public Options {
      if (chunkRows < 1) {
        throw new IllegalArgumentException("chunkRows must be at least 1, got " + chunkRows);
      }
    }

    /**
     * Mean over the targets, -100 ignored, no class weights, chunks of about 1 GiB of fp32 logits
     * (2,093 tokens at a 128k vocabulary; a chunk's backward holds about 3.5 GiB: bf16 and fp32
     * logits, the softmax and its bf16 gradient): large enough that each chunk's matmuls keep a
     * GPU busy (chunks of 64 MiB made a 1.5B LLaMA's step 1.9x slower on an H200), small enough
     * that the whole logits' many GiB never exist.
     */
    public static Options defaults(long vocab) {
      return new Options(-100, null, Reduction.MEAN, Math.max(1, (256L << 20) / vocab));
    }
  }

  /**
   * The loss (a 0-dim fp32 tensor, differentiable with respect to {@code hidden} and {@code weight}).
   *
   * @param hidden {@code [..., d]}
   * @param weight {@code [vocab, d]} (stored {@code [out, in]}, as an LM head)
   * @param targets int64 of {@code hidden}'s leading shape
   */
  public static Tensor apply(Tensor hidden, Tensor weight, Tensor targets, Options options) {
    long d = hidden.size(-1);
    if (weight.dim() != 2 || weight.size(1) != d) {
      throw new IllegalArgumentException("the head weight must be [vocab, " + d + "], got " + Arrays.toString(weight.sizes().vec().get()));
    }
    Tensor rows = hidden.reshape(-1, d);
    Tensor flatTargets = targets.reshape(-1);
    if (flatTargets.size(0) != rows.size(0)) {
      throw new IllegalArgumentException(rows.size(0) + " hidden rows but " + flatTargets.size(0) + " targets");
    }
    if (!org.bytedeco.pytorch.GradMode.is_enabled() || !(rows.requires_grad() || weight.requires_grad())) {
      try (NoGradGuard g = new NoGradGuard()) { // no backward will come: nothing to keep for one
        Tensor[] summed = forward(rows, weight, flatTargets, options);
        return options.reduction() == Reduction.MEAN ? summed[0].div(summed[1]) : summed[0];
      }
    }
    Tensor lossSum;
    double denominator;
    try (NoGradGuard g = new NoGradGuard()) {
      Tensor[] summed = forward(rows, weight, flatTargets, options);
      lossSum = summed[0];
      denominator = options.reduction() == Reduction.MEAN ? summed[1].item_double() : 1.0;
    }
    Tensor loss = lossSum.div(new Scalar(denominator));
    // Owned handles: backward may run after the caller's scope holding these has closed.
    Tensor keptTargets = io.bmtrain4j.internal.Native.own(flatTargets.detach().clone());
    Tensor keptRows = io.bmtrain4j.internal.Native.own(rows.detach());
    Tensor keptWeight = io.bmtrain4j.internal.Native.own(weight.detach());
    CustomBackward.Backward backward = gradOutputs -> {
      try {
        Tensor g = gradOutputs.get(0);
        // No gradient, or nothing counted (every target ignored): zero gradients, as cross_entropy's.
        double scale = g == null || denominator == 0 ? 0.0 : g.item_double() / denominator;
        return backward(keptRows, keptWeight, keptTargets, options, scale);
      } finally {
        keptTargets.close();
        keptRows.close();
        keptWeight.close();
      }
    };
    return CustomBackward.apply(List.of(rows, weight), List.of(loss), backward).get(0);
  }

  /** The weighted sum of the rows' losses, and the sum of their weights (what a mean divides by). */
  private static Tensor[] forward(Tensor rows, Tensor weight, Tensor targets, Options o) {
    Tensor lossSum = torch.zeros(new long[] {}, new org.bytedeco.pytorch.TensorOptions().dtype(
        new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Float)).device(new org.bytedeco.pytorch.DeviceOptional(rows.device())));
    Tensor weightSum = lossSum.clone();
    long n = rows.size(0);
    for (long start = 0; start < n; start += o.chunkRows()) {
      try (PointerScope chunk = new PointerScope()) {
        long len = Math.min(o.chunkRows(), n - start);
        Tensor t = targets.narrow(0, start, len);
        Tensor logits = Linear.apply(rows.narrow(0, start, len), weight).to(torch.ScalarType.Float);
        Tensor w = rowWeights(t, o);
        Tensor picked = logits.gather(1, safe(t, o).unsqueeze(1)).squeeze(1);
        Tensor perRow = torch.logsumexp(logits, new long[] {1}, false).sub(picked).mul(w);
        lossSum.add_(perRow.sum());
        weightSum.add_(w.sum());
      }
    }
    return new Tensor[] {lossSum, weightSum};
  }

  /**
   * Gradients of {@code scale * sum_i w_i * loss_i}: for each chunk, {@code (softmax - onehot) * w}
   * multiplied into {@code hidden}'s rows and accumulated into {@code weight}'s.
   */
  private static List<Tensor> backward(Tensor rows, Tensor weight, Tensor targets, Options o, double scale) {
    Tensor gradRows = torch.empty_like(rows);
    Tensor gradWeight = torch.zeros_like(weight, new org.bytedeco.pytorch.TensorOptions().dtype(
        new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Float)), new org.bytedeco.pytorch.MemoryFormatOptional());
    long n = rows.size(0);
    for (long start = 0; start < n; start += o.chunkRows()) {
      try (PointerScope chunk = new PointerScope()) {
        long len = Math.min(o.chunkRows(), n - start);
        Tensor t = targets.narrow(0, start, len);
        Tensor h = rows.narrow(0, start, len);
        Tensor probabilities = torch.softmax(Linear.apply(h, weight).to(torch.ScalarType.Float), 1, new org.bytedeco.pytorch.ScalarTypeOptional());
        probabilities.scatter_add_(1, safe(t, o).unsqueeze(1), torch.full(new long[] {len, 1}, new Scalar(-1.0),
            probabilities.options()));
        // Both products in the parameters' dtype, as autograd takes them from whole logits: an fp32
        // [vocab, tokens] x [tokens, d] product misses the tensor cores (70 ms a step at 1.5B, 128k vocabulary).
        Tensor gradLogits = probabilities.mul_(rowWeights(t, o).mul(new Scalar(scale)).unsqueeze(1)).to(rows.scalar_type());
        gradRows.narrow(0, start, len).copy_(gradLogits.matmul(weight));
        gradWeight.add_(gradLogits.t().matmul(h));
      }
    }
    return List.of(gradRows, gradWeight.to(weight.scalar_type()));
  }

  /** Each row's weight: its class weight (or 1), 0 where the target is ignored. */
  private static Tensor rowWeights(Tensor targets, Options o) {
    Tensor valid = targets.ne(new Scalar(o.ignoreIndex())).to(torch.ScalarType.Float);
    return o.classWeights() == null ? valid : o.classWeights().to(torch.ScalarType.Float).index_select(0, safe(targets, o)).mul(valid);
  }

  /** Targets with ignored ones replaced by class 0 (they are weighted 0), so they can index. */
  private static Tensor safe(Tensor targets, Options o) {
    return targets.masked_fill(targets.eq(new Scalar(o.ignoreIndex())), new Scalar(0));
  }
}
