package io.bmtrain4j.examples.train;

import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** Greedy generation from the trained model (every rank runs it: the forward is collective). */
public final class Sampler {
  private Sampler() {}

  /** Appends {@code count} greedily chosen tokens to {@code prompt}; returns prompt + continuation. */
  public static long[] greedy(LanguageModel model, long[] prompt, int count, int maxSeq, String device) {
    long[] seq = java.util.Arrays.copyOf(prompt, prompt.length + count);
    model.train(false);
    try (NoGradGuard g = new NoGradGuard()) {
      for (int n = prompt.length; n < seq.length; n++) {
        try (PointerScope scope = new PointerScope()) {
          int from = Math.max(0, n - maxSeq);
          long[] window = java.util.Arrays.copyOfRange(seq, from, n);
          Tensor in = torch.tensor(window).view(1, window.length)
              .to(new org.bytedeco.pytorch.Device(device), torch.ScalarType.Long);
          Tensor logits = model.forward(in);
          seq[n] = logits.select(1, window.length - 1).argmax().item().toLong();
        }
      }
    } finally {
      model.train(true);
    }
    return seq;
  }
}
