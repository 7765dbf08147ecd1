package io.bmtrain4j.optim.lr;

import java.util.List;

/** Creates schedules by name (command lines, configuration files). */
public final class LrSchedulers {
  public static final List<String> NAMES = List.of("noDecay", "noam", "linear", "cosine", "exponential");

  private LrSchedulers() {}

  /** {@code gamma} is used by "exponential" only. Unknown names fail listing the known ones. */
  public static LrScheduler create(String name, LearningRateTarget optimizer, double startLr, int warmupIter,
      int endIter, double gamma) {
    switch (name) {
      case "noDecay":
        return new NoDecay(optimizer, startLr, warmupIter, endIter);
      case "noam":
        return new Noam(optimizer, startLr, warmupIter, endIter);
      case "linear":
        return new Linear(optimizer, startLr, warmupIter, endIter);
      case "cosine":
        return new Cosine(optimizer, startLr, warmupIter, endIter);
      case "exponential":
        return new Exponential(optimizer, startLr, warmupIter, endIter, gamma);
      default:
        throw new IllegalArgumentException("unknown learning-rate schedule '" + name + "': use one of " + NAMES);
    }
  }
}
