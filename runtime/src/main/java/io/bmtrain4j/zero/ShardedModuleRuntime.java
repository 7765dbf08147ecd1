package io.bmtrain4j.zero;

import io.bmtrain4j.autograd.CustomBackward;
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
 * holds, and the role its container gave it. Generated code builds it in the constructor and
 * routes {@code forward} (and every {@code @EntryPoint}) through {@link #forward}.
 *
 * <p>Two roles:
 * <ul>
 *   <li>standalone (a model's root, or any instance not held by a {@code @Checkpoint} or
 *       {@code @BlockList} field): parameters are gathered around forward and stay gathered until
 *       backward has delivered their gradients, which {@link #finishBackward()} reduce-scatters
 *       (the optimizer and {@code Bmt.parameters} call it);
 *   <li>checkpointed (bound by its container): forward runs without autograd, the backward
 *       recomputes it, and its gradients are reduce-scattered as soon as its backward ends.
 * </ul>
 */
public final class ShardedModuleRuntime {
  private final String className;
  private final DistContext context;
  private final ParameterGroup group;
  private final List<Child> children;
  private final GradientReducer reducer;
  private String path = "";
  private BlockOptions options;
  private List<ShardedModuleRuntime> list;
  private int listIndex = -1;
  private boolean awaitingGradients;
  private int activeCalls;
  private long recomputes;
  private long skippedMatmuls;
  private boolean shapesAgreed;

  /** A block field of this module: a single block or a list; {@code index} -1 for a single one. */
  record Child(String field, int index, ShardedModuleRuntime runtime) {}

  private ShardedModuleRuntime(String className, DistContext context, ParameterGroup group, List<Child> children) {
    this.className = className;
    this.context = context;
    this.group = group;
    this.children = children;
    this.reducer = context.attachment(GradientReducer.class, GradientReducer::new);
    for (Child c : children) {
      c.runtime.setPath(childPath("", c));
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

    /** A {@code @Distributed Tensor} field. */
    public Builder tensor(String field, Tensor value) {
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
      if (r.options != null) {
        throw new IllegalStateException(where + " holds a block that is already part of another container:"
            + " construct a separate " + generatedClass + " for each place");
      }
      return r;
    }

    public ShardedModuleRuntime build() {
      DistContext ctx = DistContext.current();
      ParameterGroup group = tensors.isEmpty() ? null : new ParameterGroup(className, ctx.communicator(), names, tensors);
      return new ShardedModuleRuntime(className, ctx, group, List.copyOf(children));
    }
  }

  private void bindAsBlock(BlockOptions options, List<ShardedModuleRuntime> list, int index) {
    this.options = options;
    this.list = list;
    this.listIndex = index;
  }

  /**
   * Replaces the options of every checkpointed block below this module (benchmarks and tests
   * compare ZeRO levels, recompute and prefetch on one model class). Only between steps.
   */
  public void configureBlocks(BlockOptions newOptions) {
    for (ShardedModuleRuntime r : tree()) {
      if (r.options != null) {
        if (r.group != null && r.group.state() != GroupState.SHARDED) {
          throw new IllegalStateException(r.path() + " is gathered: change block options between steps only");
        }
        r.options = newOptions;
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

  BlockOptions options() {
    return options;
  }

  GradientReducer reducer() {
    return reducer;
  }

  public DistContext context() {
    return context;
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
      for (ParameterGroup.Member m : r.group.members()) {
        lines.add(r.keyPrefix() + m.name() + " " + java.util.Arrays.toString(m.shape()) + " " + r.group.dtype());
      }
    }
    return lines;
  }

  /** Runs {@code body} (the user's forward) as this module's role requires. */
  public <R> R forward(Object[] args, ForwardBody<R> body) {
    boolean outermost = ForwardTape.current() == null;
    if (outermost && !shapesAgreed) {
      // Before this model's first collective: ranks that built different models would send
      // buffers of different sizes, which Gloo answers with a native abort.
      context.requireSameOnEveryRank("model", parameterLayout());
      for (ShardedModuleRuntime r : tree()) {
        r.shapesAgreed = true; // a nested block recomputed in backward is outermost there: agreed already
      }
    }
    if (outermost) {
      ForwardTape.begin();
    }
    // An enclosing block's recompute leaves out only its own last matmul, not a nested module's:
    // a nested block that keeps its graph would otherwise keep a stand-in's garbage.
    List<EarlyStop.StandIn> enclosingRecompute = EarlyStop.begin(false);
    try {
      return options == null || group == null ? standalone(args, body) : checkpointed(args, body);
    } catch (ReleasedParameterException e) {
      throw e;
    } catch (RuntimeException e) {
      throw explainReleased(e);
    } finally {
      EarlyStop.end(enclosingRecompute);
      if (outermost) {
        ForwardTape.end();
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
        for (ParameterGroup.Member m : r.group.members()) {
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

  private <R> R standalone(Object[] args, ForwardBody<R> body) {
    if (group == null) {
      return body.call(args);
    }
    group.gather();
    if (GradMode.is_enabled() && group.anyRequiresGrad()) {
      if (!awaitingGradients) {
        group.clearGradients(); // a new accumulation window: autograd hands over, then adds, in .grad
      }
      awaitingGradients = true;
    }
    activeCalls++;
    try {
      return body.call(args);
    } finally {
      // A nested call (forward calling an @EntryPoint of the same module) must not release
      // what the outer call still uses.
      if (--activeCalls == 0 && !awaitingGradients) {
        group.release();
      }
    }
  }

  private <R> R checkpointed(Object[] args, ForwardBody<R> body) {
    List<Tensor> inputs = TensorTree.tensorsIn(args);
    boolean needsBackward = GradMode.is_enabled() && (group.anyRequiresGrad() || anyRequiresGrad(inputs));
    group.gather();
    prefetchNext();
    if (!needsBackward) {
      try {
        return callFreeingTemporaries(args, body);
      } finally {
        group.release();
      }
    }
    R result;
    BlockCall call;
    if (options.recompute()) {
      RngState rng = RngState.capture(group.device()); // owned: used by the backward, closed there
      try (NoGradGuard noGrad = new NoGradGuard()) {
        result = callFreeingTemporaries(args, body);
      }
      call = new BlockCall(this, args, body, rng, null, null, ForwardTape.current());
    } else {
      Object[] leafArgs = TensorTree.detachArgs(args);
      R kept = body.call(leafArgs);
      List<Tensor> keptOutputs = TensorTree.tensorsOut(kept, path());
      // Both live until this block's backward, which closes these very handles (they may outlive a
      // step's scope; a TensorVector hands out new handles on every read, so the list is kept).
      List<Tensor> keptLeaves = TensorTree.tensorsIn(leafArgs);
      keptLeaves.forEach(Native::own);
      keptOutputs.forEach(Native::own);
      List<Tensor> values = new ArrayList<>();
      for (Tensor t : keptOutputs) {
        values.add(t == null ? null : t.detach());
      }
      result = TensorTree.replace(kept, values);
      call = new BlockCall(this, args, body, null, keptLeaves, keptOutputs, ForwardTape.current());
    }
    if (options.zeroLevel() == 3) {
      group.release();
    }
    // A kept graph may have saved its outputs (tanh and sigmoid save theirs): they are wired out
    // of place, so neither the wiring nor a caller's in-place change touches what it saved.
    List<Tensor> wired = CustomBackward.apply(inputs, TensorTree.tensorsOut(result, path()), call::backward,
        options.recompute());
    return TensorTree.replace(result, wired);
  }

  /**
   * Runs {@code body} in its own {@link PointerScope}, so the activations it creates are freed when
   * the block returns rather than when the user's step scope closes (which would hold every
   * block's activations at once and defeat recompute); the outputs move to the enclosing scope.
   * Anything else the forward keeps (a cache stored in a field) must be kept with
   * {@code Bmt.keep}, as under any user PointerScope.
   */
  private <R> R callFreeingTemporaries(Object[] args, ForwardBody<R> body) {
    PointerScope enclosing = PointerScope.getInnerScope();
    R result;
    List<Tensor> outputs = new ArrayList<>();
    try (PointerScope blockScope = new PointerScope()) {
      result = body.call(args);
      for (Tensor t : TensorTree.tensorsOut(result, path())) {
        outputs.add(t == null ? null : Native.moveTo(new Tensor(t), blockScope, enclosing));
      }
    }
    return TensorTree.replace(result, outputs); // a new container (TensorVector) belongs to the enclosing scope
  }

  private void prefetchNext() {
    // A world of one has nothing in flight to overlap: prefetching would only hold memory longer.
    if (list != null && options.prefetch() && context.worldSize() > 1 && listIndex + 1 < list.size()) {
      ShardedModuleRuntime next = list.get(listIndex + 1);
      if (next.group != null) {
        next.group.prefetch();
      }
    }
  }

  private static boolean anyRequiresGrad(List<Tensor> tensors) {
    for (Tensor t : tensors) {
      if (t != null && t.defined() && t.requires_grad()) {
        return true;
      }
    }
    return false;
  }

  /**
   * Completes backward's bookkeeping for this module and every block below it: the last block
   * reduce-scatter in flight, the standalone groups' gradients (reduce-scattered now), and any
   * gathered buffer nobody consumed. Every rank must call it at the same point (it communicates).
   */
  public void finishBackward() {
    reducer.drain();
    for (ShardedModuleRuntime r : tree()) {
      r.finishOwn();
    }
  }

  private void finishOwn() {
    if (group == null) {
      return;
    }
    if (awaitingGradients) {
      group.collectGradients();
      PendingReduction p = group.reduceGradients();
      if (p != null) {
        p.complete();
      }
      awaitingGradients = false;
    }
    group.release();
  }
}
