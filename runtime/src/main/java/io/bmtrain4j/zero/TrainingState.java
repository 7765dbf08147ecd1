package io.bmtrain4j.zero;

/**
 * Where a standalone module is in a training step (FSDP2's {@code TrainingState}). A checkpointed
 * block needs none: each of its forwards carries its own backward ({@link BlockCall}).
 */
enum TrainingState {
  /** Parameters sharded; no gradients expected. */
  IDLE,
  /** Inside the module's forward (or a nested entry point): parameters gathered. */
  FORWARD,
  /**
   * Forward ran with autograd: the parameters stay gathered until backward has left their
   * gradients in {@code .grad} and {@code finishBackward} reduce-scatters them.
   */
  AWAITING_BACKWARD
}
