package io.bmtrain4j.optim.lr;

/** Warmup, then {@code startLr}. */
public final class NoDecay extends LrScheduler {
  public NoDecay(LearningRateTarget optimizer, double startLr, int warmupIter, int endIter) {
    super(optimizer, startLr, warmupIter, endIter);
  }

  @Override
  public String name() {
    return "noDecay";
  }

  @Override
  protected double decay(int n) {
    return startLr;
  }
}
