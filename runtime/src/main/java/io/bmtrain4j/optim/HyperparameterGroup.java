package io.bmtrain4j.optim;

import io.bmtrain4j.zero.ShardedParameter;
import java.util.List;

/**
 * Parameters that share optimizer settings (BMTrain's {@code grouped_parameters}, PyTorch's
 * {@code param_groups}): the scheduler's learning rate times {@code lrScale}, and a decoupled
 * weight decay. Not to be confused with {@link io.bmtrain4j.zero.ParameterGroup}, a block's flat
 * buffer: one hyperparameter group may span many blocks, and one block many hyperparameter groups.
 */
public record HyperparameterGroup(List<ShardedParameter> parameters, double lrScale, double weightDecay) {
  public HyperparameterGroup {
    parameters = List.copyOf(parameters);
    if (lrScale < 0 || weightDecay < 0) {
      throw new IllegalArgumentException("lrScale and weightDecay must be >= 0, got " + lrScale + ", " + weightDecay);
    }
  }

  public static HyperparameterGroup of(List<ShardedParameter> parameters, double weightDecay) {
    return new HyperparameterGroup(parameters, 1.0, weightDecay);
  }
}
