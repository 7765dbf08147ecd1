package io.bmtrain4j.zero;

import io.bmtrain4j.autograd.CustomBackward;
import io.bmtrain4j.dist.CommContext;
import io.bmtrain4j.internal.Native;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

/**
 * A module bound by its container's {@code @Checkpoint} or {@code @BlockList} field (BMTrain's
 * {@code CheckpointBlock}): forward runs without autograd, or keeps its graph, or keeps only its
 * costly parts' graphs, as its {@link ActivationMode} says this step (the block's options, a plan
 * given by hand, or the activation budget's: {@link ActivationPlanning}); the backward recomputes
 * what was not kept ({@link BlockCall}), and its gradients are reduce-scattered
 * as soon as its backward ends. In a list, the next block's all-gather overlaps this block's
 * forward.
 */
final class CheckpointedBlock implements ModuleRole {
  private final ShardedModuleRuntime module;
  private final ParameterGroup group;
  private final CommContext comm;
  private final List<ShardedModuleRuntime> list; // the @BlockList this block is in; null for a @Checkpoint field
  private final int listIndex;
  private BlockOptions options;

  CheckpointedBlock(ShardedModuleRuntime module, ParameterGroup group, CommContext comm, BlockOptions options,
      List<ShardedModuleRuntime> list, int listIndex) {
    this.module = module;
    this.group = group;
    this.comm = comm;
    this.options = options;
    this.list = list;
    this.listIndex = listIndex;
  }

  ShardedModuleRuntime module() {
    return module;
  }

  ParameterGroup group() {
    return group;
  }

  BlockOptions options() {
    return options;
  }

  void setOptions(BlockOptions options) {
    this.options = options;
  }

  CommContext comm() {
    return comm;
  }

  @Override
  public boolean gathered() {
    return group != null && group.state() != GroupState.SHARDED;
  }

  @Override
  public void finishBackward() {
    if (group != null) {
      group.release(); // a prefetch nobody consumed (a step that ended before this block's backward)
    }
  }

  @Override
  public <R> R forward(Object[] args, ForwardBody<R> body) {
    if (group == null) {
      return body.call(args); // nothing to shard: a container of other blocks
    }
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
    ActivationPlanning planning = module.activationPlanning();
    boolean probe = planning.probes(this);
    ActivationMode mode = probe ? ActivationMode.RECOMPUTE : planning.modeOf(this);
    R result;
    BlockCall call;
    boolean wireInPlace = true;
    if (mode != ActivationMode.KEEP) {
      RngState rng = RngState.capture(group.device()); // owned: used by the backward, closed there
      SelectiveRecompute.Frame parts = mode == ActivationMode.SELECTIVE
          ? SelectiveRecompute.Frame.keeping(module.path(), group.device()) : null;
      try {
        if (probe) {
          result = probe(args, body, planning);
        } else {
          try (NoGradGuard noGrad = new NoGradGuard()) {
            result = SelectiveRecompute.within(parts, () -> callFreeingTemporaries(args, body));
          }
        }
      } catch (RuntimeException | Error e) {
        rng.close(); // no backward will use them
        if (parts != null) {
          parts.close();
        }
        throw e;
      }
      call = new BlockCall(this, mode, args, body, rng, parts, null, null, module.forwardTape());
    } else {
      Object[] leafArgs = TensorTree.detachArgs(args);
      // Leaves and outputs live until this block's backward, which closes these very handles (they
      // may outlive a step's scope; a TensorVector hands out new handles on every read, so the
      // lists are kept). The forward's other handles die when it returns: the graph holds what it
      // saved, and a product it did not save (one fed only to an addition) is freed at once.
      List<Tensor> keptLeaves = TensorTree.tensorsIn(leafArgs);
      keptLeaves.forEach(Native::own);
      R kept;
      try {
        kept = callFreeingTemporaries(leafArgs, body);
      } catch (RuntimeException | Error e) {
        Native.closeAll(keptLeaves); // no backward will use them
        throw e;
      }
      List<Tensor> keptOutputs = TensorTree.tensorsOut(kept, module.path());
      keptOutputs.forEach(Native::own);
      List<Tensor> values = new ArrayList<>();
      for (Tensor t : keptOutputs) {
        values.add(t == null ? null : t.detach());
      }
      result = TensorTree.replace(kept, values);
      call = new BlockCall(this, mode, args, body, null, null, keptLeaves, keptOutputs, module.forwardTape());
      wireInPlace = savesNoOutput(keptOutputs);
    }
    if (options.zeroLevel() == 3) {
      group.release();
    }
    List<Tensor> wired = CustomBackward.apply(inputs, TensorTree.tensorsOut(result, module.path()), call::backward,
        wireInPlace);
    return TensorTree.replace(result, wired);
  }

  /**
   * Autograd nodes that save neither their output nor anything an in-place change of it would
   * alter: a kept graph ending in one of them can have its output wired in place.
   */
  private static final java.util.Set<String> OUTPUT_FREE = java.util.Set.of(
      "AddBackward0", "AddBackward1", "SubBackward0", "SubBackward1");

  /**
   * Whether a kept graph's single output may be wired in place: its producer saved nothing of it.
   * Otherwise (tanh and sigmoid save their outputs; a second output may be computed from the
   * first) the wiring copies each output, so that neither the wiring nor a caller's in-place change
   * touches what the graph saved. The copy is the size of the block's output: at 1.3B, 6% of
   * what a kept block holds.
   */
  private static boolean savesNoOutput(List<Tensor> keptOutputs) {
    int floating = 0;
    for (Tensor t : keptOutputs) {
      if (t == null || !t.defined() || !t.is_floating_point()) {
        continue;
      }
      floating++;
      if (!t.requires_grad()) {
        continue; // no graph behind it
      }
      org.bytedeco.pytorch.Node node = t.grad_fn();
      if (node == null || node.isNull() || !OUTPUT_FREE.contains(node.name().getString())) {
        return false;
      }
    }
    return floating <= 1;
  }

  /**
   * The activation budget's probe of this block (see [Note: activation budget]): the forward runs
   * with autograd, what its graph holds and how long it took are recorded, and the graph is then
   * dropped, leaving the outputs a recompute's forward would have made.
   */
  private <R> R probe(Object[] args, ForwardBody<R> body, ActivationPlanning planning) {
    MemoryMeter meter = planning.meter();
    SelectiveRecompute.Frame parts = SelectiveRecompute.Frame.probing(module.path(), meter);
    PointerScope enclosing = PointerScope.getInnerScope();
    List<Tensor> outputs = new ArrayList<>();
    R kept;
    try (PointerScope scope = new PointerScope()) {
      Object[] leafArgs = TensorTree.detachArgs(args);
      long before = meter.allocated();
      long start = System.nanoTime();
      // As a kept graph would run: the forward's temporaries die, what the graph saved stays.
      kept = SelectiveRecompute.within(parts, () -> callFreeingTemporaries(leafArgs, body));
      long graphAlive = meter.allocated(); // synchronises a GPU: the time is the forward's
      double millis = (System.nanoTime() - start) / 1e6;
      List<Tensor> keptOutputs = TensorTree.tensorsOut(kept, module.path());
      long outputBytes = 0;
      for (Tensor t : keptOutputs) {
        outputBytes += t == null || !t.defined() ? 0 : t.nbytes();
      }
      long graphBytes = graphAlive - before - outputBytes;
      long pinnedBytes = 0;
      if (options.zeroLevel() == 3) {
        // Release frees the gathered buffer (and a shard the optimizer can rebuild). What it fails
        // to free while the graph is alive, the graph would pin if it were kept.
        HeldMemory held = group.heldMemory();
        group.release();
        HeldMemory after = group.heldMemory();
        long releases = held.gatheredBytes() + held.shardBytes() - after.gatheredBytes() - after.shardBytes();
        pinnedBytes = Math.max(0, releases - (graphAlive - meter.allocated()));
      }
      // A kept output that cannot be wired in place is copied by the wiring.
      long copiedBytes = savesNoOutput(keptOutputs) ? 0 : outputBytes;
      long keepBytes = Math.max(0, graphBytes + pinnedBytes + copiedBytes);
      planning.record(new ActivationPlanner.BlockCost(module.path(), keepBytes, millis,
          Math.min(parts.measuredBytes(), keepBytes), parts.measuredMillis()));
      for (Tensor t : keptOutputs) {
        outputs.add(t == null ? null : Native.moveTo(t.detach(), scope, enclosing));
      }
    }
    return TensorTree.replace(kept, outputs); // a new container (TensorVector) belongs to the enclosing scope
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
      for (Tensor t : TensorTree.tensorsOut(result, module.path())) {
        outputs.add(t == null ? null : Native.moveTo(new Tensor(t), blockScope, enclosing));
      }
    }
    return TensorTree.replace(result, outputs); // a new container (TensorVector) belongs to the enclosing scope
  }

  private void prefetchNext() {
    // A world of one has nothing in flight to overlap: prefetching would only hold memory longer.
    if (list != null && options.prefetch() && comm.dataParallel().worldSize() > 1 && listIndex + 1 < list.size()) {
      ParameterGroup next = list.get(listIndex + 1).group();
      if (next != null) {
        next.prefetch();
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
}
