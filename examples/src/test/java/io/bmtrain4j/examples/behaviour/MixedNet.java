package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.annotations.BlockList;
import io.bmtrain4j.annotations.Distributed;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** A regression model whose parameters and activations are fp32, bf16 or fp16 (mixed-precision tests). */
public class MixedNet {
  @Distributed Tensor proj;
  @BlockList List<Mlp> layers = new ArrayList<>();
  final torch.ScalarType dtype;

  public MixedNet(int d, int n, torch.ScalarType dtype) {
    this.dtype = dtype;
    proj = torch.randn(d, d).mul(new Scalar(0.3)).to(dtype).requires_grad_(true);
    for (int i = 0; i < n; i++) {
      layers.add(new DistributedMlp(d, 2 * d, 0, dtype));
    }
  }

  /** Output in fp32, whatever the model's dtype. */
  public Tensor forward(Tensor x) {
    Tensor h = x.to(dtype).matmul(proj);
    for (Mlp b : layers) {
      h = b.forward(h);
    }
    return h.to(torch.ScalarType.Float);
  }
}
