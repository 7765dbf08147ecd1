package io.bmtrain4j.optim.lr;

import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * A learning-rate schedule with linear warmup, after BMTrain's {@code WarmupLRScheduler}: for
 * iteration {@code n} (counted from 0), {@code lr = startLr * n / warmupIter} while
 * {@code n < warmupIter}, then the subclass's decay. {@link #step()} advances one iteration and
 * sets the optimizer's learning rate.
 */
public abstract class LrScheduler {
  protected final LearningRateTarget optimizer;
  protected final double startLr;
  protected final int warmupIter;
  protected final int endIter;
  private int numIter;

  protected LrScheduler(LearningRateTarget optimizer, double startLr, int warmupIter, int endIter) {
    if (startLr < 0 || warmupIter < 0 || endIter < warmupIter) {
      throw new IllegalArgumentException("invalid schedule: startLr " + startLr + ", warmupIter " + warmupIter
          + ", endIter " + endIter + " (need startLr >= 0 and 0 <= warmupIter <= endIter)");
    }
    this.optimizer = optimizer;
    this.startLr = startLr;
    this.warmupIter = warmupIter;
    this.endIter = endIter;
    optimizer.setLearningRate(lrAt(0));
  }

  /** The schedule's name, as {@link LrSchedulers#create} knows it. */
  public abstract String name();

  /** The rate after warmup, for {@code n >= warmupIter}. */
  protected abstract double decay(int n);

  public final double lrAt(int n) {
    if (n < warmupIter) {
      return startLr * (n + 0.0) / warmupIter;
    }
    return decay(n);
  }

  /** The rate in force now. */
  public double currentLr() {
    return lrAt(numIter);
  }

  public int iteration() {
    return numIter;
  }

  /** Advances one iteration and sets the optimizer's rate. */
  public void step() {
    numIter++;
    optimizer.setLearningRate(currentLr());
  }

  public Map<String, Tensor> stateDict() {
    Map<String, Tensor> out = new LinkedHashMap<>();
    out.put("num_iter", torch.tensor(new long[] {numIter}).reshape(new long[] {}));
    return out;
  }

  public void loadStateDict(Map<String, Tensor> state) {
    Tensor saved = state.get("num_iter");
    if (saved == null || saved.dim() != 0) {
      throw new IllegalArgumentException("a learning-rate schedule's state needs a scalar 'num_iter'"
          + (saved == null ? ", and this one has none (" + state.keySet() + ")" : ", and this one has shape "
          + java.util.Arrays.toString(saved.sizes().vec().get())) + ": it was saved from something else");
    }
    numIter = (int) saved.item().toLong();
    optimizer.setLearningRate(currentLr());
  }
}
