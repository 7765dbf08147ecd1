package io.bmtrain4j.zero;

/**
 * Where one rank's shard of a block's flat buffer meets one parameter: the slice
 * {@code [offsetInParameter, offsetInParameter + length)} of the flattened parameter lies at
 * {@code [offsetInShard, offsetInShard + length)} of the shard. All 0 when they do not meet.
 * Every slice-of-a-parameter computation (optimizer views, checkpoints, initialisation) uses it.
 */
public record Overlap(long offsetInParameter, long offsetInShard, long length) {
  static final Overlap NONE = new Overlap(0, 0, 0);

  public boolean isEmpty() {
    return length == 0;
  }
}
