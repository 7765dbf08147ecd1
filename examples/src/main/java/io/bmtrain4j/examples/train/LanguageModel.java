package io.bmtrain4j.examples.train;

import org.bytedeco.pytorch.Tensor;

/** What the training main needs of a model family (the GPT and LLaMA examples implement it). */
public interface LanguageModel {
  /** Logits {@code [batch, seq, vocab]}, for tokens {@code [batch, seq]} (int64). */
  Tensor forward(Tensor tokens);

  /** Training behaviour (dropout) on or off. */
  void train(boolean on);
}
