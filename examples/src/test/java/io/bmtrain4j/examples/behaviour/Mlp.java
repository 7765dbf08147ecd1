package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.annotations.Distributed;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** A residual MLP block with optional dropout; counts its forward calls (recomputes included). */
public class Mlp {
  @Distributed Tensor w1;
  @Distributed Tensor b1;
  @Distributed Tensor w2;
  final double dropout;
  boolean training = true;
  int calls;
  /** The last forward's hidden activation, kept only so tests can see whether it was freed. */
  Tensor lastHidden;

  public Mlp(int d, int h, double dropout) {
    this(d, h, dropout, torch.ScalarType.Float);
  }

  /** Parameters drawn in fp32 (the same values for every dtype), then stored as {@code dtype}. */
  public Mlp(int d, int h, double dropout, torch.ScalarType dtype) {
    w1 = torch.randn(d, h).mul(new Scalar(0.3)).to(dtype).requires_grad_(true);
    b1 = torch.randn(h).mul(new Scalar(0.1)).to(dtype).requires_grad_(true);
    w2 = torch.randn(h, d).mul(new Scalar(0.3)).to(dtype).requires_grad_(true);
    this.dropout = dropout;
  }

  public Tensor forward(Tensor x) {
    calls++;
    Tensor h = torch.gelu(x.matmul(w1).add(b1));
    lastHidden = h;
    return x.add(torch.dropout(h, dropout, training).matmul(w2));
  }
}
