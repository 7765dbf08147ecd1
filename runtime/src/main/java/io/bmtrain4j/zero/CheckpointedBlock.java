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
 * {@code CheckpointBlock}): forward runs without autograd (or keeps its graph when recompute is
 * off), the backward recomputes it ({@link BlockCall}), and its gradients are reduce-scattered
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
    R result;
    BlockCall call;
    if (options.recompute()) {
      RngState rng = RngState.capture(group.device()); // owned: used by the backward, closed there
      try (NoGradGuard noGrad = new NoGradGuard()) {
        result = callFreeingTemporaries(args, body);
      }
      call = new BlockCall(this, args, body, rng, null, null, module.forwardTape());
    } else {
      Object[] leafArgs = TensorTree.detachArgs(args);
      R kept = body.call(leafArgs);
      List<Tensor> keptOutputs = TensorTree.tensorsOut(kept, module.path());
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
      call = new BlockCall(this, args, body, null, keptLeaves, keptOutputs, module.forwardTape());
    }
    if (options.zeroLevel() == 3) {
      group.release();
    }
    // A kept graph may have saved its outputs (tanh and sigmoid save theirs): they are wired out
    // of place, so neither the wiring nor a caller's in-place change touches what it saved.
    List<Tensor> wired = CustomBackward.apply(inputs, TensorTree.tensorsOut(result, module.path()), call::backward,
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
