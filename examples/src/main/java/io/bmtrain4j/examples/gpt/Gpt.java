package io.bmtrain4j.examples.gpt;

import io.bmtrain4j.annotations.BlockList;
import io.bmtrain4j.annotations.Distributed;
import io.bmtrain4j.annotations.EntryPoint;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import org.bytedeco.pytorch.LayerNormImpl;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * A GPT as a user of bmtrain4j writes it: token and position embeddings, a list of transformer
 * blocks, a final norm and an LM head tied to the token embedding. Construct
 * {@code new DistributedGpt(config, DistributedTransformerBlock::new)} for the sharded model, or
 * {@code new Gpt(config, TransformerBlock::new)} for a plain single-process one.
 */
public class Gpt implements io.bmtrain4j.examples.train.LanguageModel {
  @Distributed Tensor tokenEmbedding;
  @Distributed Tensor positionEmbedding;
  @Distributed LayerNormImpl finalNorm;
  @BlockList List<TransformerBlock> layers = new ArrayList<>();

  final GptConfig config;

  public Gpt(GptConfig c, Function<GptConfig, TransformerBlock> block) {
    config = c;
    tokenEmbedding = TransformerBlock.normal(c.vocab(), c.dModel(), 0.02, c);
    positionEmbedding = TransformerBlock.normal(c.maxSeq(), c.dModel(), 0.01, c);
    for (int i = 0; i < c.layers(); i++) {
      layers.add(block.apply(c));
    }
    finalNorm = TransformerBlock.layerNorm(c);
  }

  /** Logits {@code [batch, seq, vocab]} in the model's dtype, for tokens {@code [batch, seq]} (int64). */
  public Tensor forward(Tensor tokens) {
    long t = tokens.size(1);
    // In place: a Java handle keeps the looked-up embeddings alive until the step's scope closes,
    // where Python frees them after the add (64 MiB at 1.3B; autograd needs neither).
    Tensor x = torch.embedding(tokenEmbedding, tokens).add_(positionEmbedding.narrow(0, 0, t));
    for (TransformerBlock b : layers) {
      x = b.forward(x);
    }
    return lmHead(finalNorm.forward(x));
  }

  /** The LM head, tied to the token embedding: also callable on its own (generation). */
  @EntryPoint
  public Tensor lmHead(Tensor hidden) {
    return hidden.matmul(tokenEmbedding.t());
  }

  /** Dropout on (training) or off (evaluation) in every block. */
  @Override
  public void train(boolean on) {
    for (TransformerBlock b : layers) {
      b.training = on;
    }
  }

  /** Every parameter tensor of the model (for plain-model bookkeeping such as dropping gradients). */
  public void visitParameters(java.util.function.Consumer<Tensor> visitor) {
    visitor.accept(tokenEmbedding);
    visitor.accept(positionEmbedding);
    visitor.accept(finalNorm.weight());
    visitor.accept(finalNorm.bias());
    for (TransformerBlock b : layers) {
      b.visitParameters(visitor);
    }
  }

  public GptConfig config() {
    return config;
  }

}
