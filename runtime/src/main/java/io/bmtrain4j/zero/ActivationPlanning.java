package io.bmtrain4j.zero;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Tensor;

/**
 * A model tree's choice of what each checkpointed block keeps for backward: the blocks' own
 * options, a plan given by hand ({@link #fix}), or the activation budget's plan ({@link
 * #setBudget}), which this class measures and makes.
 *
 * <p>[Note: activation budget] With a budget, the first training step for a new input shape is a
 * probe: every block recomputes, and each block's forward runs once with autograd to measure
 * what keeping its graph would hold (bytes still allocated after its forward, less its outputs,
 * plus a gathered buffer its graph would pin) and how long its forward takes, which is what a
 * recompute would cost; its {@link SelectiveRecompute#costly} parts are measured likewise. A block
 * called twice in one forward keeps two graphs, so its figures add up; over several forwards
 * (micro-batches) the largest counts. At the end of that step's backward {@link ActivationPlanner}
 * fills the headroom between the probe step's peak and the budget. The plan holds until the
 * input shapes change; the plans of the last {@link #PLANS_KEPT} shapes are kept, so batches that
 * come back to a shape measured before are not measured again. The probe step computes what any step computes: the forward it measured
 * is the forward, and its graph is dropped, as a recompute's would be.
 *
 * <p>Each rank plans from its own figures, with no communication: what a block keeps changes no
 * collective (every mode gathers in forward and in backward and reduce-scatters alike), so ranks
 * whose plans differ, or that measure in different steps (a short last batch on one rank), cannot
 * deadlock. With equal shapes on equal devices they measure the same bytes and keep as many
 * blocks.
 */
final class ActivationPlanning {
  private ActivationBudget budget;
  private Map<String, ActivationMode> fixed = Map.of();
  private ActivationPlan plan;
  /** Plans made for other input shapes (variable-length batches come back to a few): the latest few. */
  private final Map<String, ActivationPlan> earlier = new LinkedHashMap<>(16, 0.75f, true) {
    @Override
    protected boolean removeEldestEntry(Map.Entry<String, ActivationPlan> eldest) {
      return size() > PLANS_KEPT;
    }
  };
  static final int PLANS_KEPT = 8;
  private String probeShapes;
  private MemoryMeter meter;
  private final Map<String, ActivationPlanner.BlockCost> probed = new LinkedHashMap<>();
  private final Map<String, ActivationPlanner.BlockCost> probedThisForward = new LinkedHashMap<>();

  void setBudget(ActivationBudget budget) {
    this.budget = budget;
    this.plan = null;
    earlier.clear();
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
    ActivationPlan known = earlier.get(shapes);
    if (known != null) {
      plan = known; // measured before: no second probe
      return;
    }
    if (meter == null) {
      meter = MemoryMeter.on(device);
    }
    probeShapes = shapes;
    probed.clear();
    probedThisForward.clear();
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
    // A block called twice in one forward keeps two graphs: the figures add up.
    probedThisForward.merge(cost.block(), cost, ActivationPlanner.BlockCost::plus);
  }

  /** At the end of the tree's outermost forward: over forwards (micro-batches), the largest figures count. */
  void endForward() {
    for (ActivationPlanner.BlockCost cost : probedThisForward.values()) {
      probed.merge(cost.block(), cost, ActivationPlanner.BlockCost::largest);
    }
    probedThisForward.clear();
  }

  /** A reading during the probe step's backward (the CPU's peak is the largest reading). */
  void sampleMemory() {
    if (probing()) {
      meter.allocated();
    }
  }

  /** After the probe step's backward: make the plan from this rank's figures. */
  void finishStep() {
    if (!probing()) {
      return;
    }
    endForward();
    String shapes = probeShapes;
    probeShapes = null;
    if (probed.isEmpty()) {
      return; // nothing needed a backward: nothing to plan
    }
    long peak = meter.peak();
    long budgetBytes = budget.resolve(meter.capacity());
    List<ActivationPlanner.BlockCost> costs = new ArrayList<>(probed.values());
    plan = new ActivationPlan(shapes, ActivationPlanner.plan(budgetBytes - peak, costs), costs, budgetBytes, peak);
    earlier.put(shapes, plan);
    probed.clear();
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
