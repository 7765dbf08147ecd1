package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.annotations.BlockList;
import io.bmtrain4j.annotations.Checkpoint;
import io.bmtrain4j.annotations.Distributed;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.LinearImpl;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The behaviours BMTrain's tests pin down, in one model: sharded layers outside the list (an
 * embedding and a libtorch Linear), an unsharded libtorch layer, a block list whose first hidden
 * state is also used by the loss, and a checkpointed block with two outputs of different shapes.
 */
public class Net {
  static final int VOCAB = 11;
  static final int D = 8;
  static final int H = 12;
  static final int LAYERS = 3;

  @Distributed Tensor embed;
  @Distributed LinearImpl pre;
  @SuppressWarnings("bmtrain4j-unsharded") // on purpose: BMTrain's tests have a layer outside the sharding too
  LinearImpl unsharded;
  @BlockList List<Mlp> layers = new ArrayList<>();
  @Checkpoint TwoHeads heads;
  /** Calls the checkpointed block a second time in each forward (weights shared within a step). */
  boolean headsTwice;

  public Net(double dropout, boolean sharded) {
    embed = torch.randn(VOCAB, D).mul(new Scalar(0.5)).requires_grad_(true);
    pre = new LinearImpl(D, D);
    unsharded = new LinearImpl(D, D);
    for (int i = 0; i < LAYERS; i++) {
      layers.add(sharded ? new DistributedMlp(D, H, dropout) : new Mlp(D, H, dropout));
    }
    heads = sharded ? new DistributedTwoHeads(D) : new TwoHeads(D);
  }

  public Tensor forward(Tensor tokens) {
    Tensor x = unsharded.forward(pre.forward(torch.embedding(embed, tokens)));
    Tensor firstHidden = null;
    for (Mlp b : layers) {
      x = b.forward(x);
      if (firstHidden == null) {
        firstHidden = x;
      }
    }
    Tensor[] h = heads.forward(x);
    if (headsTwice) {
      Tensor[] again = heads.forward(x.mul(new Scalar(0.5)));
      h = new Tensor[] {h[0].add(again[0]), h[1].add(again[1])};
    }
    // A nested call of an entry point of this same module, before the root's parameters are used again.
    Tensor side = tiedHead(firstHidden.mul(new Scalar(0.5)));
    Tensor logits = h[0].matmul(embed.t()).add(side);
    // The second output must vary across the vocabulary (a constant shift per position would
    // vanish in the softmax and leave heads.v with a zero gradient).
    return logits.add(h[1].unsqueeze(-1).mul(embed.narrow(1, 0, 1).t()).mul(new Scalar(0.1)));
  }

  /** The output projection tied to the embedding. */
  @io.bmtrain4j.annotations.EntryPoint
  public Tensor tiedHead(Tensor hidden) {
    return hidden.matmul(embed.t());
  }

  /** Reads a block's parameter from outside the block: a user error the runtime must explain. */
  @io.bmtrain4j.annotations.EntryPoint
  public Tensor peekFirstBlockWeight(Tensor hidden) {
    return hidden.matmul(layers.get(0).w1);
  }

  void train(boolean on) {
    for (Mlp m : layers) {
      m.training = on;
    }
  }

  /** Every parameter by state-dict key, as the sharded model names them. */
  java.util.Map<String, Tensor> namedParameters() {
    java.util.Map<String, Tensor> out = new java.util.LinkedHashMap<>();
    out.put("embed", embed);
    out.put("pre.weight", pre.weight());
    out.put("pre.bias", pre.bias());
    for (int i = 0; i < layers.size(); i++) {
      out.put("layers." + i + ".w1", layers.get(i).w1);
      out.put("layers." + i + ".b1", layers.get(i).b1);
      out.put("layers." + i + ".w2", layers.get(i).w2);
    }
    out.put("heads.w", heads.w);
    out.put("heads.v", heads.v);
    return out;
  }
}
