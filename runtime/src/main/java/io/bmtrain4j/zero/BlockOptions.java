package io.bmtrain4j.zero;

/**
 * How a checkpointed block runs: ZeRO level 3 (release after forward, gather again for backward)
 * or 2 (stay gathered until backward), activations recomputed or kept, how many blocks of a list
 * may be gathered at once (2: prefetch the next; 1: no prefetch), and whether a recompute leaves
 * out the block's {@link EarlyStop#lastMatmul} (on by default; off recomputes it, to compare).
 *
 * <p>{@link #builder()} names each option and starts from the defaults, e.g.
 * {@code BlockOptions.builder().zeroLevel(2).earlyStop(false).build()}.
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

  /** ZeRO-3, recompute with early stop, prefetch on: {@code builder().build()}. */
  public static BlockOptions defaults() {
    return builder().build();
  }

  /** A builder starting from {@link #defaults()}. */
  public static Builder builder() {
    return new Builder();
  }

  boolean prefetch() {
    return maxGatheredBlocks >= 2;
  }

  /**
   * Block options by name (the generated classes spell theirs out this way). {@link #build()}
   * validates as the constructor does.
   */
  public static final class Builder {
    // The defaults live here only: defaults() is builder().build().
    private int zeroLevel = 3;
    private boolean recompute = true;
    private int maxGatheredBlocks = 2;
    private boolean earlyStop = true;

    private Builder() {}

    /** 3 (the default) or 2; see {@link BlockOptions}. */
    public Builder zeroLevel(int zeroLevel) {
      this.zeroLevel = zeroLevel;
      return this;
    }

    /** Whether activations are recomputed in backward (the default) or kept from forward. */
    public Builder recompute(boolean recompute) {
      this.recompute = recompute;
      return this;
    }

    /** 2 (the default) prefetches the next block; 1 turns prefetch off. */
    public Builder maxGatheredBlocks(int maxGatheredBlocks) {
      this.maxGatheredBlocks = maxGatheredBlocks;
      return this;
    }

    /** Whether a recompute leaves out the block's {@link EarlyStop#lastMatmul} (the default). */
    public Builder earlyStop(boolean earlyStop) {
      this.earlyStop = earlyStop;
      return this;
    }

    public BlockOptions build() {
      return new BlockOptions(zeroLevel, recompute, maxGatheredBlocks, earlyStop);
    }
  }
}
