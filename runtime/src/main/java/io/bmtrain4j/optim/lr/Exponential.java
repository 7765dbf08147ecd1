package io.bmtrain4j.optim.lr;

/** Warmup, then {@code startLr * gamma^(n - warmupIter)}. */
public final class Exponential extends LrScheduler {
  private final double gamma;

  public Exponential(LearningRateTarget optimizer, double startLr, int warmupIter, int endIter, double gamma) {
    super(optimizer, startLr, warmupIter, endIter);
    if (!(gamma > 0 && gamma <= 1)) {
      throw new IllegalArgumentException("gamma must be in (0, 1], got " + gamma);
    }
    this.gamma = gamma;
    optimizer.setLearningRate(currentLr());
  }

  @Override
  public String name() {
    return "exponential";
  }

  @Override
  protected double decay(int n) {
    return startLr * Math.pow(gamma, n - warmupIter);
  }
}
