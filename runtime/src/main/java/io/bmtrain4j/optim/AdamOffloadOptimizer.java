package io.bmtrain4j.optim;

import io.bmtrain4j.zero.ShardedParameter;
import java.util.List;

/**
 * {@link AdamOptimizer} with master weights and moments in host memory (pinned when the parameters
 * are on a GPU): each step copies the gradients to the host, updates there, and copies the
 * parameters back. Frees the device of 12 bytes per parameter slice element. The same Adam; only
 * where its state lives differs ({@code HostStatePlacement}, which says how the copies run).
 */
public final class AdamOffloadOptimizer extends AdamOptimizer {
  public AdamOffloadOptimizer(List<ShardedParameter> parameters, AdamOptions options) {
    super(List.of(HyperparameterGroup.of(parameters, options.weightDecay())), options, new HostStatePlacement());
  }

  public AdamOffloadOptimizer(AdamOptions options, HyperparameterGroup... groups) {
    super(List.of(groups), options, new HostStatePlacement());
  }
}
