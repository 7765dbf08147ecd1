package test.gpt;

import io.bmtrain4j.annotations.BlockList;
import io.bmtrain4j.annotations.Checkpoint;
import io.bmtrain4j.annotations.Distributed;
import io.bmtrain4j.annotations.EntryPoint;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.LayerNormImpl;
import org.bytedeco.pytorch.Module;
import org.bytedeco.pytorch.Tensor;

public class GPT extends Module {
  public static class Config {
    public int layers = 2;
  }

  @Distributed Tensor tokenEmbedding, positionEmbedding;
  @BlockList(maxGatheredBlocks = 3) List<TransformerBlock> layers = new ArrayList<>();
  @Checkpoint(zeroLevel = 2, recompute = false) TransformerBlock head;
  @Distributed LayerNormImpl lnFinal;

  public GPT(Config c) {
    for (int i = 0; i < c.layers; i++) {
      layers.add(new DistributedTransformerBlock(c));
    }
    head = new DistributedTransformerBlock(c);
  }

  public Tensor forward(Tensor tokens) {
    Tensor x = tokens.matmul(tokenEmbedding).add(positionEmbedding);
    for (TransformerBlock b : layers) {
      x = b.forward(x, x);
    }
    return logits(lnFinal.forward(head.forward(x, x)));
  }

  /** The LM head tied to the token embedding. */
  @EntryPoint
  public Tensor logits(Tensor hidden) {
    return hidden.matmul(tokenEmbedding.t());
  }
}
