package io.bmtrain4j.zero;

import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.dist.ReduceOperation;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * A model tree's choice of what each checkpointed block keeps for backward: the blocks' own
 * options, a plan given by hand ({@link #fix}), or the activation budget's plan ({@link
 * #setBudget}), which this class measures and makes.
 *
 * <p>[Note: activation budget] With a budget, the first training step for a new input shape is a
 * probe: every block recomputes, and each block's forward runs once with autograd to measure
 * what keeping its graph would hold (bytes still allocated after its forward, less its outputs,
 * plus a gathered buffer its graph would pin) and how long its forward takes, which is what a
 * recompute would cost; its {@link SelectiveRecompute#costly} parts are measured likewise. At the
 * end of that step's backward, the ranks agree on the largest of each figure (one all-reduce),
 * and {@link ActivationPlanner} fills the headroom between the probe step's peak and the budget.
 * The plan holds until the input shapes change. The probe step computes what any step computes:
 * the forward it measured is the forward, and its graph is dropped, as a recompute's would be.
 */
final class ActivationPlanning {
  private ActivationBudget budget;
  private Map<String, ActivationMode> fixed = Map.of();
  private ActivationPlan plan;
  private String probeShapes;
  private MemoryMeter meter;
  private final Map<String, ActivationPlanner.BlockCost> probed = new LinkedHashMap<>();

  void setBudget(ActivationBudget budget) {
    this.budget = budget;
    this.plan = null;
    this.probeShapes = null;
    probed.clear();
  }

  ActivationBudget budget() {
    return budget;
  }

  /** Modes given by hand, by block path; they override the budget's plan and the blocks' options. */
  void fix(Map<String, ActivationMode> modes) {
    this.fixed = Map.copyOf(modes);
  }

  ActivationPlan plan() {
    return plan;
  }

  boolean probing() {
    return probeShapes != null;
  }

  MemoryMeter meter() {
    return meter;
  }

  /** At the start of the tree's outermost forward: probe when the budget has no plan for these shapes. */
  void beginForward(Object[] args, Device device) {
    if (budget == null || probing() || !GradMode.is_enabled()) {
      return;
    }
    String shapes = shapesOf(args);
    if (plan != null && plan.inputShapes().equals(shapes)) {
      return;
    }
    if (meter == null) {
      meter = MemoryMeter.on(device);
    }
    probeShapes = shapes;
    probed.clear();
    meter.resetPeak();
  }

  ActivationMode modeOf(CheckpointedBlock block) {
    String path = block.module().path();
    ActivationMode given = fixed.get(path);
    if (given != null) {
      return given;
    }
    if (plan != null && !probing()) {
      ActivationMode planned = plan.modeOf(path);
      if (planned != null) {
        return planned;
      }
    }
    return block.options().recompute() ? ActivationMode.RECOMPUTE : ActivationMode.KEEP;
  }

  /** Whether {@code block}'s forward in this step is measured (the budget decides it: nothing fixed it). */
  boolean probes(CheckpointedBlock block) {
    return probing() && !fixed.containsKey(block.module().path());
  }

  void record(ActivationPlanner.BlockCost cost) {
    // A block called twice in a step (or micro-batches): its largest figures.
    probed.merge(cost.block(), cost, (a, b) -> new ActivationPlanner.BlockCost(a.block(),
        Math.max(a.keepBytes(), b.keepBytes()), Math.max(a.keepSavesMillis(), b.keepSavesMillis()),
        Math.max(a.selectiveBytes(), b.selectiveBytes()), Math.max(a.selectiveSavesMillis(), b.selectiveSavesMillis())));
  }

  /** After the probe step's backward (every rank calls it: it communicates): make the plan. */
  void finishStep(Communicator comm, Device device) {
    if (!probing()) {
      return;
    }
    String shapes = probeShapes;
    probeShapes = null;
    if (probed.isEmpty()) {
      return; // nothing needed a backward: nothing to plan
    }
    long peak = meter.peak();
    long capacity = meter.capacity();
    Measured agreed = agree(comm, device, new ArrayList<>(probed.values()), peak);
    long budgetBytes = budget.resolve(capacity);
    Map<String, ActivationMode> modes = ActivationPlanner.plan(budgetBytes - agreed.peak, agreed.costs);
    plan = new ActivationPlan(shapes, modes, agreed.costs, budgetBytes, agreed.peak);
    probed.clear();
  }

  private record Measured(long peak, List<ActivationPlanner.BlockCost> costs) {}

  /** Every rank's largest figure of each cost, and of the peak, so that all ranks plan alike. */
  private static Measured agree(Communicator comm, Device device, List<ActivationPlanner.BlockCost> costs,
      long peak) {
    long[] values = new long[1 + 4 * costs.size()]; // times in microseconds
    values[0] = peak;
    for (int i = 0; i < costs.size(); i++) {
      ActivationPlanner.BlockCost c = costs.get(i);
      values[1 + 4 * i] = c.keepBytes();
      values[2 + 4 * i] = Math.round(c.keepSavesMillis() * 1000);
      values[3 + 4 * i] = c.selectiveBytes();
      values[4 + 4 * i] = Math.round(c.selectiveSavesMillis() * 1000);
    }
    if (comm.worldSize() > 1) {
      try (PointerScope scope = new PointerScope()) {
        Tensor t = torch.tensor(values).to(device, torch.ScalarType.Long);
        comm.allReduce(t, ReduceOperation.MAX).await();
        Tensor host = t.cpu().contiguous();
        host.data_ptr_long().get(values);
      }
    }
    List<ActivationPlanner.BlockCost> out = new ArrayList<>();
    for (int i = 0; i < costs.size(); i++) {
      out.add(new ActivationPlanner.BlockCost(costs.get(i).block(), values[1 + 4 * i], values[2 + 4 * i] / 1000.0,
          values[3 + 4 * i], values[4 + 4 * i] / 1000.0));
    }
    return new Measured(values[0], out);
  }

  /** The shapes of the tensors among a forward's arguments: "[8, 2048]", or "[4, 16] [4, 16]". */
  static String shapesOf(Object[] args) {
    List<String> shapes = new ArrayList<>();
    for (Tensor t : TensorTree.tensorsIn(args)) {
      if (t != null && t.defined()) {
        shapes.add(Arrays.toString(t.sizes().vec().get()));
      }
    }
    return String.join(" ", shapes);
  }
}
