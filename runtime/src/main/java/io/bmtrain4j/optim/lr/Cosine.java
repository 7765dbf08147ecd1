package io.bmtrain4j.optim.lr;

/** Warmup, then half a cosine from {@code startLr} to 0 at {@code endIter} (and 0 after). */
public final class Cosine extends LrScheduler {
  public Cosine(LearningRateTarget optimizer, double startLr, int warmupIter, int endIter) {
    super(optimizer, startLr, warmupIter, endIter);
  }

  @Override
  public String name() {
    return "cosine";
  }

  @Override
  protected double decay(int n) {
    if (n >= endIter) {
      return 0;
    }
    double progress = (n - warmupIter) / (double) Math.max(1, endIter - warmupIter);
    return startLr * 0.5 * (1 + Math.cos(Math.PI * progress));
  }
}
