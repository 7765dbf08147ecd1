package io.bmtrain4j.zero;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * What each checkpointed block keeps for backward, as the activation budget chose it: for which
 * input shapes, from which measured costs, within which budget. {@link #describe} is the line the
 * training log and the memory report print.
 *
 * @param inputShapes the shapes of the model's inputs the plan was measured for; another shape
 *     measures again
 * @param modes each block's mode, by path ("layers.3"), in model order
 * @param costs the measurements behind it (this rank's)
 * @param budgetBytes the budget resolved on this device
 * @param recomputePeakBytes the peak of the measured step, every block recomputing
 */
public record ActivationPlan(String inputShapes, Map<String, ActivationMode> modes,
    List<ActivationPlanner.BlockCost> costs, long budgetBytes, long recomputePeakBytes) {

  /** Extra bytes the plan keeps from forward to backward, by the measured costs. */
  public long keptBytes() {
    long sum = 0;
    for (ActivationPlanner.BlockCost c : costs) {
      sum += c.bytes(modes.get(c.block()));
    }
    return sum;
  }

  /** Recompute time the plan saves per step, by the measured costs. */
  public double savedMillis() {
    double sum = 0;
    for (ActivationPlanner.BlockCost c : costs) {
      sum += c.savesMillis(modes.get(c.block()));
    }
    return sum;
  }

  public ActivationMode modeOf(String block) {
    return modes.get(block);
  }

  /**
   * One line: e.g. {@code activation plan for [8, 2048]: keep layers.0-17, selective layers.18-19,
   * recompute layers.20-23; keeps 38.2 GiB more than full recompute (peak 29.0 GiB, budget 125.2
   * GiB), saves 52.1 ms of recompute per step}.
   */
  public String describe() {
    List<String> parts = new ArrayList<>();
    for (ActivationMode mode : ActivationMode.values()) {
      String blocks = ranges(mode);
      if (!blocks.isEmpty()) {
        parts.add(mode.name().toLowerCase(Locale.ROOT) + " " + blocks);
      }
    }
    return String.format(Locale.ROOT,
        "activation plan for %s: %s; keeps %s more than full recompute (peak %s, budget %s), saves %.1f ms of recompute per step",
        inputShapes, String.join(", ", parts), size(keptBytes()), size(recomputePeakBytes), size(budgetBytes), savedMillis());
  }

  /** The blocks in {@code mode}, consecutive list indices folded: "layers.0-5, layers.9, head". */
  private String ranges(ActivationMode mode) {
    List<String> out = new ArrayList<>();
    String prefix = null;
    int first = -1;
    int last = -1;
    for (Map.Entry<String, ActivationMode> e : modes.entrySet()) {
      if (e.getValue() != mode) {
        continue;
      }
      String block = e.getKey();
      int dot = block.lastIndexOf('.');
      String p = dot < 0 ? null : block.substring(0, dot);
      Integer index = dot < 0 ? null : parseIndex(block.substring(dot + 1));
      if (index != null && p.equals(prefix) && index == last + 1) {
        last = index;
        continue;
      }
      flush(out, prefix, first, last);
      if (index == null) {
        out.add(block);
        prefix = null;
      } else {
        prefix = p;
        first = index;
        last = index;
      }
    }
    flush(out, prefix, first, last);
    return String.join(", ", out);
  }

  private static void flush(List<String> out, String prefix, int first, int last) {
    if (prefix != null) {
      out.add(prefix + "." + (first == last ? String.valueOf(first) : first + "-" + last));
    }
  }

  private static Integer parseIndex(String s) {
    try {
      return Integer.parseInt(s);
    } catch (NumberFormatException e) {
      return null;
    }
  }

  static String size(long bytes) {
    if (Math.abs(bytes) >= 1L << 30) {
      return String.format(Locale.ROOT, "%.2f GiB", bytes / (double) (1L << 30));
    }
    return String.format(Locale.ROOT, "%.1f MiB", bytes / (double) (1L << 20));
  }
}
