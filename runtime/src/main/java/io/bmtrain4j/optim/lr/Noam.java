package io.bmtrain4j.optim.lr;

/** Warmup, then inverse square root: {@code startLr * sqrt(warmupIter / n)} (the Transformer paper's schedule). */
public final class Noam extends LrScheduler {
  public Noam(LearningRateTarget optimizer, double startLr, int warmupIter, int endIter) {
    super(optimizer, startLr, warmupIter, endIter);
  }

  @Override
  public String name() {
    return "noam";
  }

  @Override
  protected double decay(int n) {
    return n == 0 ? startLr : startLr * Math.sqrt(Math.max(1, warmupIter) / (double) n);
  }
}
