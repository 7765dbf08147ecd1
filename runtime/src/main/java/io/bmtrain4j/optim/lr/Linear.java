package io.bmtrain4j.optim.lr;

/** Warmup, then linear decay to 0 at {@code endIter} (and 0 after). */
public final class Linear extends LrScheduler {
  public Linear(LearningRateTarget optimizer, double startLr, int warmupIter, int endIter) {
    super(optimizer, startLr, warmupIter, endIter);
  }

  @Override
  public String name() {
    return "linear";
  }

  @Override
  protected double decay(int n) {
    if (endIter == warmupIter) {
      return n <= endIter ? startLr : 0;
    }
    return startLr * Math.max(0.0, (endIter - n) / (double) (endIter - warmupIter));
  }
}
