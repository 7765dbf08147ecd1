package io.bmtrain4j.zero;

import io.bmtrain4j.dist.CollectiveHandle;
import org.bytedeco.pytorch.Tensor;

/** A gradient reduce-scatter in flight, holding its buffers until it has completed. */
public final class PendingReduction {
  private final ParameterGroup group;
  private CollectiveHandle handle;
  private Tensor input;
  private Tensor output;

  PendingReduction(ParameterGroup group, CollectiveHandle handle, Tensor input, Tensor output) {
    this.group = group;
    this.handle = handle;
    this.input = input;
    this.output = output;
  }

  /** Waits for the reduce-scatter and adds the averaged result into the group's shard gradient. Idempotent. */
  public void complete() {
    if (handle == null) {
      return;
    }
    handle.await();
    handle = null;
    if (input != null) {
      input.close();
      input = null;
    }
    group.accumulateShardGrad(output);
    output = null;
  }
}
