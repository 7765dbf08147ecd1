package io.bmtrain4j.examples.init;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.annotations.Distributed;
import io.bmtrain4j.init.Initializer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** A block whose parameters are declared, not drawn, at construction. */
public class DeferredBlock {
  @Distributed Tensor w;
  @Distributed Tensor b;

  public DeferredBlock(int d) {
    w = Bmt.parameter(Initializer.xavierUniform(), d, d);
    b = Bmt.parameter(Initializer.zeros(), d);
  }

  public Tensor forward(Tensor x) {
    return x.add(torch.gelu(x.matmul(w).add(b)));
  }
}
