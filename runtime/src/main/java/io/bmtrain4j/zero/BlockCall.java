package io.bmtrain4j.zero;

import io.bmtrain4j.autograd.CustomBackward;
import io.bmtrain4j.internal.Native;
import org.bytedeco.javacpp.PointerScope;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.AutoGradMode;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;

/**
 * One forward of a checkpointed block that needs a backward: what the backward needs to recompute
 * (arguments, RNG state) or the kept graph, and its place on the forward tape.
 */
final class BlockCall {
  private final CheckpointedBlock block;
  private final ActivationMode mode;
  private final SelectiveRecompute.Frame keptParts;
  private final Object[] args;
  private final ForwardBody<?> body;
  private final RngState rng;
  private final List<Tensor> keptLeaves;
  private final List<Tensor> keptOutputs;
  private final ForwardTape tape;
  private int tapeIndex = -1;
  /** NEW until backward takes over (it frees what forward kept), or until discarded unused. */
  private enum Stage { NEW, BACKWARD, DISCARDED }

  private Stage stage = Stage.NEW;

  BlockCall(CheckpointedBlock block, ActivationMode mode, Object[] args, ForwardBody<?> body, RngState rng,
      SelectiveRecompute.Frame keptParts, List<Tensor> keptLeaves, List<Tensor> keptOutputs, ForwardTape tape) {
    this.block = block;
    this.mode = mode;
    this.keptParts = keptParts;
    this.args = args;
    this.body = body;
    this.rng = rng;
    this.keptLeaves = keptLeaves;
    this.keptOutputs = keptOutputs;
    this.tape = tape;
    if (tape != null) {
      this.tapeIndex = tape.record(this);
    }
    block.module().recordCall(this);
  }

  /**
   * Frees what forward kept for a backward that never ran (a graph dropped unused; the step's
   * backward finished without reaching this block). Nothing if backward ran.
   */
  void discard() {
    if (stage != Stage.NEW) {
      return;
    }
    stage = Stage.DISCARDED;
    if (rng != null) {
      rng.close();
    }
    if (keptParts != null) {
      keptParts.close();
    }
    if (keptLeaves != null) {
      Native.closeAll(keptLeaves);
      Native.closeAll(keptOutputs);
    }
  }

  /** The Java backward handed to {@link CustomBackward}: recompute, backpropagate, reduce-scatter. */
  List<Tensor> backward(List<Tensor> gradOutputs) {
    if (stage == Stage.DISCARDED) {
      throw new IllegalStateException(block.module().path() + ": backward reached a block whose forward state was freed when"
          + " the step's backward was finished (gradients read or an optimizer step taken before this backward);"
          + " run every backward of a step before reading gradients or stepping");
    }
    stage = Stage.BACKWARD;
    ParameterGroup group = block.group();
    BlockOptions options = block.options();
    group.gather();
    BlockCall previous = tape == null ? null : tape.get(tapeIndex - 1);
    if (previous != null && options.prefetch() && block.comm().dataParallel().worldSize() > 1
        && previous.block.options().zeroLevel() == 3) {
      previous.block.group().prefetch();
    }
    group.gradients().clearParameterGradients(); // autograd then hands its gradients over: see BlockGradients' [Note: gradients land in the flat buffer]
    List<Tensor> gradInputs = new ArrayList<>();
    // The recompute's temporaries (activations) die with this scope; the input gradients move to
    // the enclosing one (CustomBackward's), which takes its own copies.
    PointerScope enclosing = PointerScope.getInnerScope();
    try (PointerScope scope = new PointerScope(); AutoGradMode grad = new AutoGradMode(true)) {
      List<Tensor> leaves;
      List<Tensor> outputs;
      List<EarlyStop.StandIn> standIns = List.of();
      boolean recompute = mode != ActivationMode.KEEP;
      if (recompute) {
        Object[] leafArgs = TensorTree.detachArgs(args);
        leaves = TensorTree.tensorsIn(leafArgs);
        RngState now = RngState.capture(group.device());
        rng.restore();
        List<EarlyStop.StandIn> outerStandIns = EarlyStop.begin(options.earlyStop());
        try {
          SelectiveRecompute.Frame replay = keptParts != null && keptParts.keptAny() ? keptParts : null;
          if (replay != null) {
            replay.startReplay();
          }
          outputs = TensorTree.tensorsOut(SelectiveRecompute.within(replay, () -> body.call(leafArgs)), block.module().path());
          if (replay != null) {
            replay.checkAllReplayed();
          }
        } catch (RuntimeException e) {
          throw EarlyStop.explainFailure(e, block.module().path());
        } finally {
          standIns = EarlyStop.end(outerStandIns);
          now.restore();
          now.close();
          rng.close();
        }
        EarlyStop.verify(outputs, standIns, block.module().path());
        block.module().countRecompute(standIns.size());
      } else {
        leaves = keptLeaves;
        outputs = keptOutputs;
      }
      TensorVector roots = new TensorVector();
      TensorVector grads = new TensorVector();
      for (int j = 0; j < outputs.size(); j++) {
        Tensor g = gradOutputs.get(j);
        if (g != null && g.defined() && outputs.get(j).requires_grad()) {
          roots.push_back(outputs.get(j));
          grads.push_back(g);
        }
      }
      EarlyStop.addStandInRoots(roots, grads, standIns, block.module().path());
      if (roots.size() > 0) {
        try (BoolOptional retain = new BoolOptional(false); TensorVector all = new TensorVector()) {
          torch.backward(roots, grads, retain, false, all);
        }
      }
      roots.close();
      grads.close();
      block.module().activationPlanning().sampleMemory(); // the CPU's peak, while a budget measures
      for (Tensor leaf : leaves) {
        Tensor g = leaf != null && leaf.defined() && leaf.requires_grad() ? leaf.grad() : null;
        if (g != null && g.defined()) {
          // grad() is a view of the leaf's field, and the scope frees the leaf: a handle of our own.
          gradInputs.add(Native.moveTo(new Tensor(g), scope, enclosing));
        } else {
          gradInputs.add(null);
        }
      }
      if (!recompute) {
        // The kept graph's leaves and outputs were owned since forward: free them now.
        Native.closeAll(leaves);
        Native.closeAll(outputs);
      }
      if (keptParts != null) {
        keptParts.close(); // the costly parts' graphs have run
      }
    }
    group.gradients().collect();
    PendingReduction reduction = group.gradients().startReduction();
    group.release();
    block.comm().gradientReductions().submit(reduction, tape == null || tapeIndex == 0);
    return gradInputs;
  }
}
