package io.bmtrain4j.optim.lr;

/** What a schedule drives: the learning rate of an optimizer (every {@code ShardedOptimizer} is one). */
public interface LearningRateTarget {
  void setLearningRate(double lr);
}
