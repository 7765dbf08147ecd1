package io.bmtrain4j.zero;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Chooses what each checkpointed block keeps for backward within a memory headroom: the pure
 * decision of the activation budget ({@link ActivationBudget}), from costs measured in a probe
 * step.
 *
 * <p>Every block starts at {@link ActivationMode#RECOMPUTE}, which costs nothing beyond the
 * measured step. Each round upgrades the one block whose next mode saves the most recompute time
 * per extra byte kept, among the upgrades that still fit (from recompute to selective or to keep,
 * from selective to keep); it stops when nothing fits. Blocks that are cheap to keep therefore go
 * first, and a headroom too small for any upgrade leaves every block recomputing. Ties go to the
 * block met first, so equal blocks are kept from the front of a list and the plan reads as a
 * range.
 */
public final class ActivationPlanner {
  private ActivationPlanner() {}

  /**
   * What one block's modes cost and save, measured: bytes held from its forward to its backward
   * beyond what a recompute holds, and the recompute time each avoids. {@code selectiveBytes}
   * and {@code selectiveSavesMillis} are 0 for a block that marked no costly part.
   */
  public record BlockCost(String block, long keepBytes, double keepSavesMillis, long selectiveBytes,
      double selectiveSavesMillis) {
    public BlockCost {
      if (keepBytes < 0 || selectiveBytes < 0 || keepSavesMillis < 0 || selectiveSavesMillis < 0) {
        throw new IllegalArgumentException(block + ": costs are never negative: " + keepBytes + " B, " + keepSavesMillis
            + " ms, " + selectiveBytes + " B, " + selectiveSavesMillis + " ms");
      }
    }

    /** Both calls' figures together: a block called twice in one forward keeps two graphs. */
    BlockCost plus(BlockCost other) {
      return new BlockCost(block, keepBytes + other.keepBytes, keepSavesMillis + other.keepSavesMillis,
          selectiveBytes + other.selectiveBytes, selectiveSavesMillis + other.selectiveSavesMillis);
    }

    /** The larger of each figure: over forwards (micro-batches), the largest counts. */
    BlockCost largest(BlockCost other) {
      return new BlockCost(block, Math.max(keepBytes, other.keepBytes), Math.max(keepSavesMillis, other.keepSavesMillis),
          Math.max(selectiveBytes, other.selectiveBytes), Math.max(selectiveSavesMillis, other.selectiveSavesMillis));
    }

    long bytes(ActivationMode mode) {
      return switch (mode) {
        case RECOMPUTE -> 0;
        case SELECTIVE -> selectiveBytes;
        case KEEP -> keepBytes;
      };
    }

    double savesMillis(ActivationMode mode) {
      return switch (mode) {
        case RECOMPUTE -> 0;
        case SELECTIVE -> selectiveSavesMillis;
        case KEEP -> keepSavesMillis;
      };
    }

    boolean hasSelective() {
      return selectiveSavesMillis > 0 && selectiveBytes < keepBytes;
    }
  }

  /**
   * The mode of each block (in the order of {@code costs}) whose extra bytes together stay within
   * {@code headroomBytes}; every block recomputes when the headroom is 0 or negative.
   */
  public static Map<String, ActivationMode> plan(long headroomBytes, List<BlockCost> costs) {
    Map<String, ActivationMode> modes = new LinkedHashMap<>();
    List<ActivationMode> current = new ArrayList<>();
    for (BlockCost c : costs) {
      if (modes.put(c.block(), ActivationMode.RECOMPUTE) != null) {
        throw new IllegalArgumentException("block " + c.block() + " is costed twice");
      }
      current.add(ActivationMode.RECOMPUTE);
    }
    long left = headroomBytes;
    while (true) {
      int best = -1;
      ActivationMode bestMode = null;
      double bestRatio = -1;
      for (int i = 0; i < costs.size(); i++) {
        BlockCost c = costs.get(i);
        ActivationMode from = current.get(i);
        for (ActivationMode to : ActivationMode.values()) {
          if (to.ordinal() <= from.ordinal() || (to == ActivationMode.SELECTIVE && !c.hasSelective())) {
            continue;
          }
          long extra = c.bytes(to) - c.bytes(from);
          double saves = c.savesMillis(to) - c.savesMillis(from);
          if (saves <= 0 || extra > left) {
            continue;
          }
          double ratio = extra <= 0 ? Double.POSITIVE_INFINITY : saves / extra;
          if (ratio > bestRatio) {
            best = i;
            bestMode = to;
            bestRatio = ratio;
          }
        }
      }
      if (best < 0) {
        break;
      }
      BlockCost c = costs.get(best);
      left -= c.bytes(bestMode) - c.bytes(current.get(best));
      current.set(best, bestMode);
      modes.put(c.block(), bestMode);
    }
    return modes;
  }
}
