package io.bmtrain4j.nn;

import io.bmtrain4j.zero.EarlyStop;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * LLaMA's feed-forward layer: {@code down(silu(gate(x)) * up(x))}. Weights are stored as
 * {@code [out, in]}, as {@code torch.nn.Linear} and Hugging Face checkpoints store them, so a
 * checkpoint's bytes load into them as they are. The down projection is the block's last matmul
 * ({@link EarlyStop#lastMatmul}): a recompute leaves it out when the result reaches the block's
 * output through the residual addition only.
 */
public final class SwiGlu {
  private SwiGlu() {}

  public static Tensor apply(Tensor x, Tensor gate, Tensor up, Tensor down) {
    Tensor hidden = torch.silu(Linear.apply(x, gate)).mul(Linear.apply(x, up));
    return EarlyStop.lastMatmul(hidden, down.t());
  }
}
