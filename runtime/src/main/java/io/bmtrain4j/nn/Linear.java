package io.bmtrain4j.nn;

import org.bytedeco.pytorch.Tensor;

/** {@code x @ weightᵀ} for a weight stored {@code [out, in]}, as {@code torch.nn.Linear} and Hugging Face store it. */
public final class Linear {
  private Linear() {}

  public static Tensor apply(Tensor x, Tensor weight) {
    return x.matmul(weight.t());
  }
}
