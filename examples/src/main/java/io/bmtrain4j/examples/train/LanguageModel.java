package io.bmtrain4j.examples.train;

import org.bytedeco.pytorch.Tensor;

/** What the training main needs of a model family (the GPT and LLaMA examples implement it). */
public interface LanguageModel {
  /** Logits {@code [batch, seq, vocab]}, for tokens {@code [batch, seq]} (int64). */
  Tensor forward(Tensor tokens);

  /**
   * The mean next-token cross-entropy of {@code targets} (int64, {@code tokens}' shape) given
   * {@code tokens}, in fp32. By default from the whole logits; a model may compute it without them.
   */
  default Tensor loss(Tensor tokens, Tensor targets) {
    Tensor logits = forward(tokens).to(org.bytedeco.pytorch.global.torch.ScalarType.Float);
    return org.bytedeco.pytorch.global.torch.cross_entropy_loss(logits.reshape(-1, logits.size(-1)), targets.reshape(-1));
  }

  /** Training behaviour (dropout) on or off. */
  void train(boolean on);
}
