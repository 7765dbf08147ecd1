package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.annotations.BlockList;
import io.bmtrain4j.annotations.Distributed;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.LinearImpl;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** {@link Net} without its checkpointed heads block: a model whose keys are a subset of Net's. */
public class SmallNet {
  @Distributed Tensor embed;
  @Distributed LinearImpl pre;
  @BlockList List<Mlp> layers = new ArrayList<>();

  public SmallNet() {
    embed = torch.randn(Net.VOCAB, Net.D).mul(new Scalar(0.5)).requires_grad_(true);
    pre = new LinearImpl(Net.D, Net.D);
    for (int i = 0; i < Net.LAYERS; i++) {
      layers.add(new DistributedMlp(Net.D, Net.H, 0));
    }
  }

  public Tensor forward(Tensor tokens) {
    Tensor x = pre.forward(torch.embedding(embed, tokens));
    for (Mlp b : layers) {
      x = b.forward(x);
    }
    return x;
  }
}
