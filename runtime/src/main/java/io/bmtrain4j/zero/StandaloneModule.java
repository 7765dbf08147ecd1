package io.bmtrain4j.zero;

import org.bytedeco.pytorch.GradMode;

/**
 * A module that is not a checkpointed block (a model's root, or any instance no container
 * binds): gathered around its forward, and, when autograd records it, kept gathered until the
 * step's backward has delivered its gradients, which {@link #finishBackward()} reduce-scatters.
 * Several forwards before one finish (micro-batches) accumulate into the same gradients.
 */
final class StandaloneModule implements ModuleRole {
  private final ParameterGroup group; // null: a module with blocks but no parameters of its own
  private TrainingState state = TrainingState.IDLE;
  private boolean gradientsExpected; // a forward with autograd since the last finish
  private int activeCalls; // forward calling an @EntryPoint of the same module nests

  StandaloneModule(ParameterGroup group) {
    this.group = group;
  }

  @Override
  public <R> R forward(Object[] args, ForwardBody<R> body) {
    if (group == null) {
      return body.call(args);
    }
    group.gather();
    if (GradMode.is_enabled() && group.anyRequiresGrad() && !gradientsExpected) {
      group.gradients().clearParameterGradients(); // a new accumulation window: autograd hands over, then adds, in .grad
      gradientsExpected = true;
    }
    activeCalls++;
    state = TrainingState.FORWARD;
    try {
      return body.call(args);
    } finally {
      // A nested call must not release what the outer call still uses.
      if (--activeCalls == 0) {
        state = gradientsExpected ? TrainingState.AWAITING_BACKWARD : TrainingState.IDLE;
        if (state == TrainingState.IDLE) {
          group.release();
        }
      }
    }
  }

  @Override
  public void finishBackward() {
    if (group == null) {
      return;
    }
    if (gradientsExpected) {
      group.gradients().collect();
      PendingReduction reduction = group.gradients().startReduction();
      if (reduction != null) {
        reduction.complete();
      }
      gradientsExpected = false;
    }
    group.release();
    state = TrainingState.IDLE;
  }

  @Override
  public boolean gathered() {
    return group != null && group.state() != GroupState.SHARDED;
  }
}
