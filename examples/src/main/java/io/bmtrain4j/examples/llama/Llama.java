package io.bmtrain4j.examples.llama;

import io.bmtrain4j.annotations.BlockList;
import io.bmtrain4j.annotations.Distributed;
import io.bmtrain4j.annotations.EntryPoint;
import io.bmtrain4j.nn.ChunkedCrossEntropy;
import io.bmtrain4j.init.Initializer;
import io.bmtrain4j.nn.Linear;
import io.bmtrain4j.nn.RmsNorm;
import io.bmtrain4j.nn.RotaryEmbedding;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * A LLaMA-family language model as a user of bmtrain4j writes it: a token embedding, a list of
 * pre-norm blocks, a final RMSNorm and an LM head, its own or tied to the embedding (the config
 * says which; a tied model leaves {@code head} null, so it is not a parameter). Construct
 * {@code new DistributedLlama(config, DistributedLlamaBlock::new)}, then either
 * {@code Bmt.initParameters(model)} (fresh values, drawn per rank slice) or load a Hugging Face
 * checkpoint ({@link HuggingFaceLlama#load}). Parameters are declared, not drawn, at construction,
 * so even an 8B model never exists whole on one rank.
 */
public class Llama implements io.bmtrain4j.examples.train.LanguageModel {
  @Distributed Tensor embed;
  @BlockList List<LlamaBlock> layers = new ArrayList<>();
  @Distributed Tensor norm;
  @Distributed Tensor head;

  final LlamaConfig config;
  final RotaryEmbedding rope;
  /** Tokens whose logits exist at once in {@link #loss}. */
  long lossChunkRows;

  public Llama(LlamaConfig c, Function<LlamaConfig, LlamaBlock> block) {
    config = c;
    embed = parameter(c, Initializer.normal(0.02), c.vocab(), c.dModel());
    for (int i = 0; i < c.layers(); i++) {
      layers.add(block.apply(c));
    }
    norm = parameter(c, Initializer.ones(), c.dModel());
    head = c.tiedEmbeddings() ? null : parameter(c, Initializer.normal(0.02), c.vocab(), c.dModel());
    rope = new RotaryEmbedding(c.headDim(), c.ropeTheta(), c.ropeScaling());
    lossChunkRows = ChunkedCrossEntropy.Options.defaults(c.vocab()).chunkRows();
  }

  /**
   * A parameter of the config's dtype and device whose values {@code Bmt.initParameters} draws
   * later (or a loader fills): a stand-in of one element (every stride 0), so constructing even
   * an 8B model allocates nothing but each rank's shards.
   */
  static Tensor parameter(LlamaConfig c, Initializer init, long... shape) {
    return io.bmtrain4j.Bmt.parameter(init, c.dtype(), new Device(c.device()), shape);
  }

  /** Logits {@code [batch, seq, vocab]} in the model's dtype, for tokens {@code [batch, seq]} (int64). */
  @Override
  public Tensor forward(Tensor tokens) {
    return Linear.apply(finalHidden(tokens), headWeight());
  }

  /**
   * The mean cross-entropy of {@code targets} without the whole logits: the head and the loss
   * are computed a chunk of tokens at a time ({@link ChunkedCrossEntropy}), which at Llama 3's
   * 128k vocabulary saves 0.5 MiB of fp32 logits per token, twice over in backward.
   */
  @Override
  @EntryPoint
  public Tensor loss(Tensor tokens, Tensor targets) {
    Tensor hidden = finalHidden(tokens);
    if (lossChunkRows == 0) { // the whole logits: faster when memory allows (see setLossChunkTokens)
      Tensor logits = Linear.apply(hidden, headWeight()).to(torch.ScalarType.Float);
      return torch.cross_entropy_loss(logits.reshape(-1, logits.size(-1)), targets.reshape(-1));
    }
    return ChunkedCrossEntropy.apply(hidden, headWeight(), targets,
        new ChunkedCrossEntropy.Options(-100, null, ChunkedCrossEntropy.Reduction.MEAN, lossChunkRows));
  }

  /**
   * Tokens whose logits {@link #loss} computes at once; 0 computes the whole logits. At a 1.5B
   * LLaMA (128k vocabulary, 8,192 tokens a step) on an H200, the default chunks took 13.1 GiB less
   * peak memory and 9% more time than the whole logits.
   */
  public void setLossChunkTokens(long tokens) {
    if (tokens < 0) {
      throw new IllegalArgumentException("loss chunk must be 0 (whole logits) or more tokens, got " + tokens);
    }
    lossChunkRows = tokens;
  }

  /** The head's {@code [vocab, dModel]} weight: its own, or the embedding when tied. */
  private Tensor headWeight() {
    return head != null ? head : embed;
  }

  /** The final norm's output {@code [batch, seq, dModel]}. */
  private Tensor finalHidden(Tensor tokens) {
    Tensor x = torch.embedding(embed, tokens);
    Tensor[] cosSin = rope.cosSin(tokens.size(1), x.device(), x.scalar_type());
    for (LlamaBlock b : layers) {
      x = b.forward(x, cosSin[0], cosSin[1]);
    }
    return RmsNorm.apply(x, norm, config.rmsNormEps());
  }

  /** LLaMA has no dropout: training and evaluation compute the same. */
  @Override
  public void train(boolean on) {}

  public LlamaConfig config() {
    return config;
  }
}
