package io.bmtrain4j.examples.gpt;

import java.util.List;
import org.bytedeco.pytorch.global.torch;

/** Shape and precision of the example GPT. */
public record GptConfig(int vocab, int maxSeq, int dModel, int heads, int layers, int dFf, double dropout,
    torch.ScalarType dtype, String device) {
  public GptConfig {
    if (dModel % heads != 0) {
      throw new IllegalArgumentException("dModel (" + dModel + ") must be divisible by heads (" + heads + ")");
    }
  }

  /** fp32 on the CPU. */
  public GptConfig(int vocab, int maxSeq, int dModel, int heads, int layers, int dFf, double dropout) {
    this(vocab, maxSeq, dModel, heads, layers, dFf, dropout, torch.ScalarType.Float, "cpu");
  }

  /** On the CPU. */
  public GptConfig(int vocab, int maxSeq, int dModel, int heads, int layers, int dFf, double dropout,
      torch.ScalarType dtype) {
    this(vocab, maxSeq, dModel, heads, layers, dFf, dropout, dtype, "cpu");
  }

  /** This config on {@code device} ("cpu", "cuda", "cuda:1"). */
  public GptConfig on(String device) {
    return new GptConfig(vocab, maxSeq, dModel, heads, layers, dFf, dropout, dtype, device);
  }

  /** The presets {@link #preset} knows. */
  public static final List<String> PRESETS = List.of("tiny", "125m", "350m", "1.3b", "6.7b");

  /**
   * A named size: "tiny" trains in seconds on a laptop CPU; "125m", "350m", "1.3b" and "6.7b" are
   * the GPT-3 shapes (about 125M, 350M, 1.3B and 6.7B parameters with a 50,304-token vocabulary).
   */
  public static GptConfig preset(String name, int vocab, int maxSeq, double dropout, torch.ScalarType dtype) {
    switch (name) {
      case "tiny":
        return new GptConfig(vocab, maxSeq, 64, 4, 4, 256, dropout, dtype);
      case "125m":
        return new GptConfig(vocab, maxSeq, 768, 12, 12, 3072, dropout, dtype);
      case "350m":
        return new GptConfig(vocab, maxSeq, 1024, 16, 24, 4096, dropout, dtype);
      case "1.3b":
        return new GptConfig(vocab, maxSeq, 2048, 16, 24, 8192, dropout, dtype);
      case "6.7b":
        return new GptConfig(vocab, maxSeq, 4096, 32, 32, 16384, dropout, dtype);
      default:
        throw new IllegalArgumentException("unknown model preset '" + name + "': use one of " + PRESETS);
    }
  }

  /** A model small enough to train in a few seconds on a laptop CPU. */
  public static GptConfig tiny(int vocab, int maxSeq) {
    return preset("tiny", vocab, maxSeq, 0.0, torch.ScalarType.Float);
  }

  public long parameterCount() {
    long block = 4L * dModel * dModel + 2L * dModel * dFf + 4L * dModel;
    return (long) vocab * dModel + (long) maxSeq * dModel + layers * block + 2L * dModel;
  }
}
