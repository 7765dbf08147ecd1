package io.bmtrain4j.zero;

/**
 * How a checkpointed block runs: ZeRO level 3 (release after forward, gather again for backward)
 * or 2 (stay gathered until backward), activations recomputed or kept, how many blocks of a list
 * may be gathered at once (2: prefetch the next; 1: no prefetch), and whether a recompute leaves
 * out the block's {@link EarlyStop#lastMatmul} (on by default; off recomputes it, to compare).
 */
public record BlockOptions(int zeroLevel, boolean recompute, int maxGatheredBlocks, boolean earlyStop) {
  public BlockOptions(int zeroLevel, boolean recompute, int maxGatheredBlocks) {
    this(zeroLevel, recompute, maxGatheredBlocks, true);
  }

  public BlockOptions {
    if (zeroLevel != 2 && zeroLevel != 3) {
      throw new IllegalArgumentException("zeroLevel must be 2 or 3, got " + zeroLevel);
    }
    if (maxGatheredBlocks < 1) {
      throw new IllegalArgumentException("maxGatheredBlocks must be at least 1, got " + maxGatheredBlocks);
    }
  }

  public static BlockOptions defaults() {
    return new BlockOptions(3, true, 2);
  }

  boolean prefetch() {
    return maxGatheredBlocks >= 2;
  }
}
