package io.bmtrain4j.zero;

/**
 * What a checkpointed block keeps of its forward for its backward.
 *
 * <ul>
 *   <li>{@link #RECOMPUTE}: only its inputs; backward runs the forward again (BMTrain's
 *       {@code CheckpointBlock}, FSDP's activation checkpointing).
 *   <li>{@link #SELECTIVE}: its inputs and the graphs of the parts its forward marked with
 *       {@link SelectiveRecompute#costly} (attention, say); backward recomputes the rest and skips
 *       those parts (torchtitan's op-level selective checkpointing).
 *   <li>{@link #KEEP}: its whole autograd graph; backward recomputes nothing.
 * </ul>
 */
public enum ActivationMode {
  RECOMPUTE, SELECTIVE, KEEP
}
