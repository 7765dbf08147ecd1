package io.bmtrain4j.optim;

import io.bmtrain4j.zero.ShardedParameter;
import java.util.List;

/**
 * {@link AdamOptimizer} with master weights and moments in host memory (pinned when the parameters
 * are on a GPU): each step copies the gradients to the host, updates there, and copies the
 * parameters back. Frees the device of 12 bytes per parameter slice element.
 *
 * <p>The copies run group by group, synchronously; overlapping one group's copies with the next
 * group's update belongs with the GPU runtime (CUDA streams), and is not done yet.
 */
public final class AdamOffloadOptimizer extends AdamOptimizer {
  public AdamOffloadOptimizer(List<ShardedParameter> parameters, AdamOptions options) {
    super(List.of(HyperparameterGroup.of(parameters, options.weightDecay())), options, true);
  }

  public AdamOffloadOptimizer(AdamOptions options, HyperparameterGroup... groups) {
    super(List.of(groups), options, true);
  }
}
