package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.annotations.Checkpoint;
import io.bmtrain4j.annotations.Distributed;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;

/** An embedding feeding a kept-graph (recompute off) block through a TensorVector argument. */
public class VectorArgNet {
  @Distributed Tensor embed;
  @Checkpoint(recompute = false) VectorBlock block;

  public VectorArgNet() {
    embed = torch.randn(Net.VOCAB, 4).mul(new Scalar(0.5)).requires_grad_(true);
    block = new DistributedVectorBlock(4);
  }

  public Tensor forward(Tensor tokens) {
    Tensor x = torch.embedding(embed, tokens);
    return block.forward(new TensorVector(x, x.mul(new Scalar(2.0))));
  }
}
