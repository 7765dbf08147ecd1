package io.bmtrain4j.nn;

import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * Root-mean-square normalisation over the last dimension (LLaMA's {@code RMSNorm}), computed as
 * Hugging Face's {@code LlamaRMSNorm} does so that loaded checkpoints give the same numbers: in
 * fp32, cast back to the input's dtype, then scaled by {@code weight}. libtorch has the
 * functional op but no module; the weight is a {@code @Distributed} field of the user's block.
 */
public final class RmsNorm {
  private RmsNorm() {}

  public static Tensor apply(Tensor x, Tensor weight, double eps) {
    Tensor x32 = x.to(torch.ScalarType.Float);
    Tensor meanSquare = x32.pow(new Scalar(2)).mean(new long[] {-1}, true, new org.bytedeco.pytorch.ScalarTypeOptional());
    Tensor normalised = x32.mul(torch.rsqrt(meanSquare.add(new Scalar(eps))));
    return weight.mul(normalised.to(x.scalar_type()));
  }
}
