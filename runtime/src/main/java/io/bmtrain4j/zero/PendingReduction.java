package io.bmtrain4j.zero;

import io.bmtrain4j.dist.CollectiveHandle;
import org.bytedeco.pytorch.Tensor;

/** A gradient reduce-scatter in flight, holding its buffers until it has completed. */
public final class PendingReduction implements io.bmtrain4j.dist.PendingCollective {
  private final BlockGradients gradients;
  private CollectiveHandle handle;
  private Tensor input;
  private Tensor output;

  PendingReduction(BlockGradients gradients, CollectiveHandle handle, Tensor input, Tensor output) {
    this.gradients = gradients;
    this.handle = handle;
    this.input = input;
    this.output = output;
  }

  /** Waits for the reduce-scatter and adds the averaged result into the block's shard gradient. Idempotent. */
  @Override
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
    gradients.accumulate(output);
    output = null;
  }
}
