package io.bmtrain4j.optim;

/**
 * The loss scale of mixed-precision training: static, or dynamic (lowered by {@code factor} on
 * an overflow, raised by {@code factor} after {@code interval} clean steps, within [min, max]).
 */
public record LossScale(double initial, boolean dynamic, double factor, int interval, double min, double max) {
  public LossScale {
    if (!(initial > 0) || !(factor > 1 || !dynamic) || interval < 1 || !(min > 0) || max < min || initial < min || initial > max) {
      throw new IllegalArgumentException("invalid loss scale " + this);
    }
  }

  /** Whether the loss is scaled at all; an unscaled run skips the overflow check, as BMTrain does. */
  public boolean enabled() {
    return dynamic || initial != 1;
  }

  /** No scaling (fp32 and bf16). */
  public static LossScale none() {
    return new LossScale(1, false, 2, 1000, 1, 1);
  }

  public static LossScale fixed(double scale) {
    return new LossScale(scale, false, 2, 1000, scale, scale);
  }

  /** BMTrain's defaults for fp16: factor 2, raise after 1000 clean steps, scale in [1, 2^24]. */
  public static LossScale dynamic(double initial) {
    return new LossScale(initial, true, 2, 1000, 1, Math.pow(2, 24));
  }

  public static LossScale dynamic(double initial, double factor, int interval, double min, double max) {
    return new LossScale(initial, true, factor, interval, min, max);
  }
}
