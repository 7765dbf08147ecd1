package io.bmtrain4j.zero;

import io.bmtrain4j.dist.CommContext;
import io.bmtrain4j.dist.DistContext;
import io.bmtrain4j.internal.Native;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Module;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.StringTensorDict;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;

/**
 * The sharding state of one generated-class instance: its {@link ParameterGroup}, the blocks it
 * holds, and its {@link ModuleRole}. Generated code builds it in the constructor and routes
 * {@code forward} (and every {@code @EntryPoint}) through {@link #forward}.
 *
 * <p>The role is chosen when the module is bound: {@link StandaloneModule} (a model's root, or any
 * instance no container binds) until a {@code @Checkpoint} or {@code @BlockList} field of its
 * container makes it a {@link CheckpointedBlock}. The whole tree shares one {@link StepProgress},
 * so the end-of-backward work ({@link #finishBackward()}) runs once per step however many
 * parameters ask for their gradients.
 */
public final class ShardedModuleRuntime {
  private final String className;
  private final DistContext context;
  private final CommContext comm;
  private final ParameterGroup group;
  private final List<Child> children;
  private String path = "";
  private ModuleRole role;
  private StepProgress step = new StepProgress();
  private long recomputes;
  private long skippedMatmuls;
  private boolean shapesAgreed;

  /** A block field of this module: a single block or a list; {@code index} -1 for a single one. */
  record Child(String field, int index, ShardedModuleRuntime runtime) {}

  /**
   * Where the model tree is in a step: the tape of the forward running now (null outside a
   * forward: a recompute in backward opens none), and whether a forward ran since backward was
   * last finished (only then is there end-of-backward work: gradients to reduce, a prefetch to
   * release).
   */
  private static final class StepProgress {
    ForwardTape tape;
    boolean finishPending;
    final ActivationPlanning activations = new ActivationPlanning();
    /** Block calls since backward was last finished; each frees what it kept when its backward runs. */
    final List<BlockCall> calls = new ArrayList<>();
  }

  private ShardedModuleRuntime(String className, DistContext context, ParameterGroup group, List<Child> children) {
    this.className = className;
    this.context = context;
    this.comm = context.comm();
    this.group = group;
    this.children = children;
    this.role = new StandaloneModule(group);
    for (Child c : children) {
      c.runtime.setPath(childPath("", c));
    }
    shareStepProgress(step);
  }

  private void shareStepProgress(StepProgress shared) {
    step = shared;
    for (Child c : children) {
      c.runtime.shareStepProgress(shared);
    }
  }

  public static Builder builder(String className) {
    return new Builder(className);
  }

  /** Collects the fields of one generated instance; called from its constructor. */
  public static final class Builder {
    private final String className;
    private final List<String> names = new ArrayList<>();
    private final List<Tensor> tensors = new ArrayList<>();
    private final List<Child> children = new ArrayList<>();

    private Builder(String className) {
      this.className = className;
    }

    /**
     * A {@code @Distributed Tensor} field. One left null is not a parameter (an LM head tied to the
     * embedding uses the embedding instead); one holding a tensor another field holds is refused,
     * since each parameter is sharded once.
     */
    public Builder tensor(String field, Tensor value) {
      if (value == null) {
        return this;
      }
      for (int i = 0; i < tensors.size(); i++) {
        if (tensors.get(i).is_same(value)) {
          throw new IllegalStateException(className + "." + field + " holds the same tensor as " + className + "."
              + names.get(i) + ": a parameter is sharded once. To tie them, leave " + field
              + " null and use " + names.get(i) + " where " + field + " was used");
        }
      }
      names.add(field);
      tensors.add(value);
      return this;
    }

    /** A {@code @Distributed} libtorch module field: all of its parameters, named {@code field.param}. */
    public Builder module(String field, Module value) {
      if (value == null) {
        throw new IllegalStateException(
            className + "." + field + " is null when the sharded class is constructed: assign it in the constructor");
      }
      try (StringTensorDict params = value.named_parameters(true)) {
        for (long i = 0; i < params.size(); i++) {
          names.add(field + "." + params.get(i).key().getString());
          // value() points into the dict, which dies here: take our own handle on the same tensor.
          tensors.add(Native.own(new Tensor(params.get(i).value())));
        }
      }
      return this;
    }

    /** A {@code @Checkpoint} field. */
    public Builder checkpoint(String field, Object block, BlockOptions options, String generatedClass) {
      ShardedModuleRuntime r = requireSharded(block, field, -1, generatedClass);
      r.bindAsBlock(options, null, -1);
      children.add(new Child(field, -1, r));
      return this;
    }

    /** A {@code @BlockList} field: a {@code List} or an array of blocks. */
    public Builder blockList(String field, Object blocks, BlockOptions options, String generatedClass) {
      List<?> elements;
      if (blocks instanceof List<?>) {
        elements = (List<?>) blocks;
      } else if (blocks instanceof Object[]) {
        elements = java.util.Arrays.asList((Object[]) blocks);
      } else {
        throw new IllegalStateException(className + "." + field + " is " + (blocks == null ? "null" : blocks.getClass().getName())
            + " when the sharded class is constructed: assign a list of " + generatedClass + " in the constructor");
      }
      List<ShardedModuleRuntime> runtimes = new ArrayList<>();
      for (int i = 0; i < elements.size(); i++) {
        runtimes.add(requireSharded(elements.get(i), field, i, generatedClass));
      }
      List<ShardedModuleRuntime> frozen = Collections.unmodifiableList(runtimes);
      for (int i = 0; i < runtimes.size(); i++) {
        runtimes.get(i).bindAsBlock(options, frozen, i);
        children.add(new Child(field, i, runtimes.get(i)));
      }
      return this;
    }

    private ShardedModuleRuntime requireSharded(Object block, String field, int index, String generatedClass) {
      String where = className + "." + field + (index >= 0 ? "[" + index + "]" : "");
      if (!(block instanceof ShardedModule)) {
        throw new IllegalStateException(
            where + " holds " + (block == null ? "null" : "a plain " + block.getClass().getName())
                + ", not a sharded block: construct it as new " + generatedClass + "(...)");
      }
      ShardedModuleRuntime r = ((ShardedModule) block).shardedRuntime();
      if (r.role instanceof CheckpointedBlock) {
        throw new IllegalStateException(where + " holds a block that is already part of another container:"
            + " construct a separate " + generatedClass + " for each place");
      }
      return r;
    }

    public ShardedModuleRuntime build() {
      DistContext ctx = DistContext.current();
      ParameterGroup group = tensors.isEmpty() ? null : new ParameterGroup(className, ctx.comm().dataParallel(), names, tensors);
      return new ShardedModuleRuntime(className, ctx, group, List.copyOf(children));
    }
  }

  private void bindAsBlock(BlockOptions options, List<ShardedModuleRuntime> list, int index) {
    this.role = new CheckpointedBlock(this, group, comm, options, list, index);
  }

  /**
   * Replaces the options of every checkpointed block below this module (benchmarks and tests
   * compare ZeRO levels, recompute and prefetch on one model class). Only between steps.
   */
  public void configureBlocks(BlockOptions newOptions) {
    for (ShardedModuleRuntime r : tree()) {
      if (r.role instanceof CheckpointedBlock block) {
        if (block.gathered()) {
          throw new IllegalStateException(r.path() + " is gathered: change block options between steps only");
        }
        block.setOptions(newOptions);
      }
    }
  }

  private static String childPath(String base, Child c) {
    String p = base.isEmpty() ? c.field() : base + "." + c.field();
    return c.index() >= 0 ? p + "." + c.index() : p;
  }

  private void setPath(String path) {
    this.path = path;
    for (Child c : children) {
      c.runtime.setPath(childPath(path, c));
    }
  }

  /** Dotted path from the root ("layers.3"), or the class name for the root. */
  public String path() {
    return path.isEmpty() ? className : path;
  }

  /** The prefix of this module's parameter names in a state dict: "" for the root, "layers.3." below. */
  public String keyPrefix() {
    return path.isEmpty() ? "" : path + ".";
  }

  public ParameterGroup group() {
    return group;
  }

  public DistContext context() {
    return context;
  }

  /** The job's communication this module shards over. */
  public CommContext comm() {
    return comm;
  }

  /** The tape of the model's forward running now, or null outside a forward. */
  ForwardTape forwardTape() {
    return step.tape;
  }

  /** Registers a block call of this step, whose kept state {@link #finishBackward} frees if no backward ran. */
  void recordCall(BlockCall call) {
    step.calls.add(call);
  }

  /** The tree's choice of what each checkpointed block keeps for backward. */
  ActivationPlanning activationPlanning() {
    return step.activations;
  }

  /**
   * Lets the runtime choose what each checkpointed block below keeps for backward within {@code
   * budget} (see [Note: activation budget] in {@link ActivationPlanning}); null goes back to the
   * blocks' own options. The next training forward measures, and the plan applies from the step
   * after it. Call it on the root, between steps.
   */
  public void setActivationBudget(ActivationBudget budget) {
    step.activations.setBudget(budget);
  }

  /** The activation budget's plan in force, or null (no budget, or not measured yet). */
  public ActivationPlan activationPlan() {
    return step.activations.plan();
  }

  /**
   * Fixes the modes of the named blocks (paths such as "layers.3"), over the budget's plan and
   * the blocks' options; an empty map lifts them. Between steps.
   */
  public void planActivations(java.util.Map<String, ActivationMode> modes) {
    java.util.Set<String> blocks = new java.util.LinkedHashSet<>();
    for (ShardedModuleRuntime r : tree()) {
      if (r.role instanceof CheckpointedBlock) {
        blocks.add(r.path());
      }
    }
    for (String name : modes.keySet()) {
      if (!blocks.contains(name)) {
        throw new IllegalArgumentException("no checkpointed block '" + name + "' in " + path() + "; its blocks are "
            + (blocks.size() > 8 ? new java.util.ArrayList<>(blocks).subList(0, 8) + " and " + (blocks.size() - 8) + " more" : blocks));
      }
    }
    step.activations.fix(modes);
  }

  /** The device of the first parameters in this tree (the CPU if there are none). */
  private org.bytedeco.pytorch.Device firstDevice() {
    for (ShardedModuleRuntime r : tree()) {
      if (r.group != null) {
        return r.group.device();
      }
    }
    return null;
  }

  /** How many times this block's forward was recomputed in backward. */
  public long recomputeCount() {
    return recomputes;
  }

  /** Matmuls this block's recomputes left out (see {@link EarlyStop}), since it was built. */
  public long skippedMatmulCount() {
    return skippedMatmuls;
  }

  void countRecompute(int skippedMatmuls) {
    recomputes++;
    this.skippedMatmuls += skippedMatmuls;
  }

  /** This module and every block below it, depth first. */
  public List<ShardedModuleRuntime> tree() {
    List<ShardedModuleRuntime> out = new ArrayList<>();
    collect(out);
    return out;
  }

  private void collect(List<ShardedModuleRuntime> out) {
    out.add(this);
    for (Child c : children) {
      c.runtime.collect(out);
    }
  }

  /** Every parameter below this module: its state-dict key, shape and dtype, one line each, in tree order. */
  List<String> parameterLayout() {
    List<String> lines = new ArrayList<>();
    for (ShardedModuleRuntime r : tree()) {
      if (r.group == null) {
        continue;
      }
      for (FlatLayout.Member m : r.group.members()) {
        lines.add(r.keyPrefix() + m.name() + " " + java.util.Arrays.toString(m.shape()) + " " + r.group.dtype());
      }
    }
    return lines;
  }

  /** Runs {@code body} (the user's forward) as this module's role requires. */
  public <R> R forward(Object[] args, ForwardBody<R> body) {
    boolean outermost = step.tape == null;
    if (outermost && !shapesAgreed) {
      // Before this model's first collective: ranks that built different models would send
      // buffers of different sizes, which Gloo answers with a native abort.
      context.requireSameOnEveryRank("model", parameterLayout());
      for (ShardedModuleRuntime r : tree()) {
        r.shapesAgreed = true; // a nested block recomputed in backward is outermost there: agreed already
      }
    }
    // Only the model's own forward measures: a nested module recomputed in backward is outermost
    // there too, but its arguments are not the model's inputs.
    boolean root = outermost && path.isEmpty();
    if (outermost) {
      step.tape = new ForwardTape();
    }
    if (root) {
      step.activations.beginForward(args, firstDevice());
    }
    // A nested module runs its costly parts as written, not as its caller's selective recompute.
    SelectiveRecompute.Frame callerParts = SelectiveRecompute.suspend();
    // An enclosing block's recompute leaves out only its own last matmul, not a nested module's:
    // a nested block that keeps its graph would otherwise keep a stand-in's garbage.
    List<EarlyStop.StandIn> enclosingRecompute = EarlyStop.begin(false);
    step.finishPending = true;
    try {
      return role.forward(args, body);
    } catch (ReleasedParameterException e) {
      throw e;
    } catch (RuntimeException e) {
      throw explainReleased(e);
    } finally {
      SelectiveRecompute.resume(callerParts);
      EarlyStop.end(enclosingRecompute);
      if (outermost) {
        step.tape = null;
      }
      if (root) {
        step.activations.endForward();
      }
    }
  }

  /**
   * libtorch reports a read of a released parameter as an op on an empty tensor, without a name.
   * If parameters below this module are released and the failure mentions an empty size, name
   * them and say how to read them legitimately.
   */
  private RuntimeException explainReleased(RuntimeException e) {
    String message = String.valueOf(e.getMessage());
    // See [Note: released placeholder] in ParameterGroup: released parameters are empty tensors.
    if (!(message.contains("[0]") || message.contains("(0)") || message.contains(" 0]") || message.contains("size 0"))) {
      return e;
    }
    List<String> released = new ArrayList<>();
    for (ShardedModuleRuntime r : tree()) {
      if (r.group != null && r.group.state() != GroupState.GATHERED) {
        for (FlatLayout.Member m : r.group.members()) {
          released.add(r.keyPrefix() + m.name());
        }
      }
    }
    if (released.isEmpty()) {
      return e;
    }
    String first = message.lines().findFirst().orElse(message);
    return new ReleasedParameterException(
        path() + " failed on an empty tensor while these parameters were released (sharded): "
            + (released.size() > 12 ? released.subList(0, 12) + " and " + (released.size() - 12) + " more" : released)
            + ". A @Distributed field is whole only while its own module's forward or @EntryPoint"
            + " methods run: call a method of the owning block (annotate it @EntryPoint) instead of"
            + " reading the field from outside. libtorch said: " + first, e);
  }

  /**
   * Completes backward's bookkeeping for this module and every block below it: the last block
   * reduce-scatter in flight, the standalone modules' gradients (reduce-scattered now), and any
   * gathered buffer nobody consumed. Every rank must call it at the same point (it communicates).
   * Once per step: it does nothing until the tree runs another forward.
   */
  public void finishBackward() {
    if (!step.finishPending) {
      return;
    }
    comm.gradientReductions().drain();
    for (ShardedModuleRuntime r : tree()) {
      r.role.finishBackward();
    }
    for (BlockCall call : step.calls) {
      call.discard(); // a graph dropped without backward: free what its forward kept
    }
    step.calls.clear();
    step.activations.finishStep();
    step.finishPending = false;
  }
}
