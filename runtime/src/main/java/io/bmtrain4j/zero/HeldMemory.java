package io.bmtrain4j.zero;

/**
 * What a sharded model holds on this rank now, by kind of buffer: shards (0 for a freed one),
 * gradients (shard gradients and flat buffers collecting), gathered parameters; and how many
 * parameters the model has in all.
 */
public record HeldMemory(long shardBytes, long gradientBytes, long gatheredBytes, long parameters, boolean onGpu) {
  static final HeldMemory NONE = new HeldMemory(0, 0, 0, 0, false);

  HeldMemory plus(HeldMemory o) {
    return new HeldMemory(shardBytes + o.shardBytes, gradientBytes + o.gradientBytes, gatheredBytes + o.gatheredBytes,
        parameters + o.parameters, onGpu || o.onGpu);
  }
}
