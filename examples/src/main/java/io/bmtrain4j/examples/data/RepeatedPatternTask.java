package io.bmtrain4j.examples.data;

import java.util.Random;
import org.bytedeco.pytorch.Tensor;

/**
 * A synthetic task that runs anywhere and is learnt visibly: each sequence is a random pattern of
 * {@code period} tokens repeated; predicting the next token is guesswork for the first period and
 * copying afterwards, so the loss falls from ln(vocab) towards (1 / repeats) ln(vocab).
 * Every rank draws its own deterministic share of each global batch.
 */
public final class RepeatedPatternTask implements TokenSource {
  private final int vocab;
  private final int seq;
  private final int period;
  private final long seed;

  public RepeatedPatternTask(int vocab, int seq, int period, long seed) {
    this.vocab = vocab;
    this.seq = seq;
    this.period = period;
    this.seed = seed;
  }

  /** Inputs and next-token targets, each {@code [batch, seq]} int64, for this rank's share of {@code step}. */
  @Override
  public Tensor[] batch(int step, int rank, int batch) {
    Random r = new Random(seed * 1_000_003L + step * 7919L + rank);
    long[] in = new long[batch * seq];
    long[] out = new long[batch * seq];
    int[] pattern = new int[period];
    for (int b = 0; b < batch; b++) {
      for (int i = 0; i < period; i++) {
        pattern[i] = r.nextInt(vocab);
      }
      for (int i = 0; i < seq; i++) {
        in[b * seq + i] = pattern[i % period];
        out[b * seq + i] = pattern[(i + 1) % period];
      }
    }
    return new Tensor[] {TokenSource.tokens(in, batch, seq), TokenSource.tokens(out, batch, seq)};
  }

  @Override
  public int vocab() {
    return vocab;
  }

  public int period() {
    return period;
  }

  @Override
  public String decode(long[] tokens) {
    StringBuilder sb = new StringBuilder();
    for (long t : tokens) {
      sb.append(Character.forDigit((int) t, 36));
    }
    return sb.toString();
  }
}
