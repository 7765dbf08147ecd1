package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.annotations.Distributed;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;

/** A block whose input is a TensorVector: a container that hands out a new Java handle on every read. */
public class VectorBlock {
  @Distributed Tensor w;

  public VectorBlock(int d) {
    w = torch.randn(d, d).mul(new Scalar(0.3)).requires_grad_(true);
  }

  public Tensor forward(TensorVector xs) {
    return xs.get(0).matmul(w).add(xs.get(1).matmul(w));
  }
}
