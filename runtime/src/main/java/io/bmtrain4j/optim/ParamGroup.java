package io.bmtrain4j.optim;

import io.bmtrain4j.zero.ShardedParameter;
import java.util.List;

/**
 * Parameters that share optimizer settings (BMTrain's {@code grouped_parameters}): the
 * scheduler's learning rate times {@code lrScale}, and a decoupled weight decay.
 */
public record ParamGroup(List<ShardedParameter> parameters, double lrScale, double weightDecay) {
  public ParamGroup {
    parameters = List.copyOf(parameters);
    if (lrScale < 0 || weightDecay < 0) {
      throw new IllegalArgumentException("lrScale and weightDecay must be >= 0, got " + lrScale + ", " + weightDecay);
    }
  }

  public static ParamGroup of(List<ShardedParameter> parameters, double weightDecay) {
    return new ParamGroup(parameters, 1.0, weightDecay);
  }
}
