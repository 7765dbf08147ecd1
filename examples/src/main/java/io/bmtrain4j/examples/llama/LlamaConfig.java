package io.bmtrain4j.examples.llama;

import io.bmtrain4j.nn.RotaryEmbedding;
import java.util.List;
import org.bytedeco.pytorch.global.torch;

/**
 * A LLaMA-family model's shape, as a Hugging Face {@code config.json} gives it.
 *
 * @param kvHeads key/value heads: fewer than {@code heads} is grouped-query attention
 * @param ropeScaling Llama 3.1+'s frequency rescaling, or null
 * @param tiedEmbeddings whether the LM head is the token embedding ({@code tie_word_embeddings}:
 *     Llama 3.2 1B and 3B) rather than a matrix of its own
 */
public record LlamaConfig(int vocab, int dModel, int layers, int heads, int kvHeads, int dFf, double ropeTheta,
    RotaryEmbedding.Llama3Scaling ropeScaling, double rmsNormEps, int maxSeq, torch.ScalarType dtype, String device,
    boolean tiedEmbeddings) {

  /** An untied head. */
  public LlamaConfig(int vocab, int dModel, int layers, int heads, int kvHeads, int dFf, double ropeTheta,
      RotaryEmbedding.Llama3Scaling ropeScaling, double rmsNormEps, int maxSeq, torch.ScalarType dtype, String device) {
    this(vocab, dModel, layers, heads, kvHeads, dFf, ropeTheta, ropeScaling, rmsNormEps, maxSeq, dtype, device, false);
  }

  public LlamaConfig {
    if (dModel % heads != 0) {
      throw new IllegalArgumentException("dModel (" + dModel + ") must be a multiple of heads (" + heads + ")");
    }
    if (kvHeads < 1 || heads % kvHeads != 0) {
      throw new IllegalArgumentException("heads (" + heads + ") must be a multiple of kvHeads (" + kvHeads + ")");
    }
  }

  public static final List<String> PRESETS = List.of("tiny", "llama3.2-1b", "llama3.2-3b", "llama2-7b", "llama3-8b");

  private static final RotaryEmbedding.Llama3Scaling LLAMA_3_2 = new RotaryEmbedding.Llama3Scaling(32, 1, 4, 8192);

  /**
   * A preset by name ({@link #PRESETS}): a tiny CPU model, or the published shapes of Llama 3.2
   * 1B and 3B, Llama 2 7B and Llama 3 8B. {@code vocab} replaces the preset's vocabulary only for
   * {@code tiny} (the others keep their tokenizer's).
   */
  public static LlamaConfig preset(String name, int vocab, int maxSeq, torch.ScalarType dtype, String device) {
    return switch (name) {
      case "tiny" -> new LlamaConfig(vocab, 64, 2, 4, 2, 172, 10000, null, 1e-5, maxSeq, dtype, device);
      case "llama3.2-1b" -> new LlamaConfig(128256, 2048, 16, 32, 8, 8192, 500000, LLAMA_3_2, 1e-5, maxSeq, dtype, device, true);
      case "llama3.2-3b" -> new LlamaConfig(128256, 3072, 28, 24, 8, 8192, 500000, LLAMA_3_2, 1e-5, maxSeq, dtype, device, true);
      case "llama2-7b" -> new LlamaConfig(32000, 4096, 32, 32, 32, 11008, 10000, null, 1e-5, maxSeq, dtype, device);
      case "llama3-8b" -> new LlamaConfig(128256, 4096, 32, 32, 8, 14336, 500000, null, 1e-5, maxSeq, dtype, device);
      default -> throw new IllegalArgumentException("no LLaMA preset '" + name + "': choose one of " + PRESETS);
    };
  }

  public int headDim() {
    return dModel / heads;
  }

  /** The same shape with {@code layers} blocks (benchmarks cut a model down to fit one GPU). */
  public LlamaConfig withLayers(int layers) {
    return new LlamaConfig(vocab, dModel, layers, heads, kvHeads, dFf, ropeTheta, ropeScaling, rmsNormEps, maxSeq, dtype,
        device, tiedEmbeddings);
  }

  /** Parameters in all: embedding, blocks, final norm and the head unless it is tied. */
  public long parameterCount() {
    long d = dModel;
    long kv = (long) kvHeads * headDim();
    long block = 2 * d + d * d + 2 * d * kv + d * d + 3 * d * dFf;
    return (tiedEmbeddings ? 1L : 2L) * vocab * d + layers * block + d;
  }
}
