package io.bmtrain4j.examples.gpt;

/** Shape of the example GPT. */
public record GptConfig(int vocab, int maxSeq, int dModel, int heads, int layers, int dFf, double dropout) {
  public GptConfig {
    if (dModel % heads != 0) {
      throw new IllegalArgumentException("dModel (" + dModel + ") must be divisible by heads (" + heads + ")");
    }
  }

  /** A model small enough to train in a few minutes on a laptop CPU. */
  public static GptConfig tiny(int vocab, int maxSeq) {
    return new GptConfig(vocab, maxSeq, 64, 4, 4, 256, 0.0);
  }

  public long parameterCount() {
    long block = 4L * dModel * dModel + 2L * dModel * dFf + 4L * dModel;
    return (long) vocab * dModel + (long) maxSeq * dModel + layers * block + 2L * dModel;
  }
}
