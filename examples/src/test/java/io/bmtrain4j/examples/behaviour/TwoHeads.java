package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.annotations.Distributed;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** A block with two outputs of different shapes: {@code [B, T, D]} and {@code [B, T]}. */
public class TwoHeads {
  @Distributed Tensor w;
  @Distributed Tensor v;

  public TwoHeads(int d) {
    w = torch.randn(d, d).mul(new Scalar(0.3)).requires_grad_(true);
    v = torch.randn(d).mul(new Scalar(0.3)).requires_grad_(true);
  }

  public Tensor[] forward(Tensor x) {
    return new Tensor[] {x.add(torch.gelu(x.matmul(w))), x.matmul(v)};
  }
}
