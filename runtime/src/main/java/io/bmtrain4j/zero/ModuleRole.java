package io.bmtrain4j.zero;

/**
 * How a module's forward gathers, keeps and reduces, chosen when the module is bound: a {@link
 * StandaloneModule} until a {@code @Checkpoint} or {@code @BlockList} field of its container makes
 * it a {@link CheckpointedBlock}.
 */
sealed interface ModuleRole permits StandaloneModule, CheckpointedBlock {
  /** Runs {@code body} (the user's forward) with this module's parameters whole. */
  <R> R forward(Object[] args, ForwardBody<R> body);

  /** Backward's bookkeeping for this module alone once the step's backward is done (see ShardedModuleRuntime#finishBackward). */
  void finishBackward();

  /** Whether the module's parameters are gathered now (block options may change only when not). */
  boolean gathered();
}
