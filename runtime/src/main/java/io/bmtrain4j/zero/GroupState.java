package io.bmtrain4j.zero;

/**
 * Where a {@link ParameterGroup}'s parameters are. Transitions are checked:
 * SHARDED -> GATHERING -> GATHERED -> SHARDED.
 */
public enum GroupState {
  /** Only the local shard exists; the parameters point at an empty tensor. */
  SHARDED,
  /** An all-gather into the full buffer is in flight; nobody may read the parameters yet. */
  GATHERING,
  /** The full buffer is valid and every parameter is a view into it. */
  GATHERED;

  void checkTransition(GroupState to, String owner) {
    boolean ok =
        (this == SHARDED && to == GATHERING)
            || (this == GATHERING && to == GATHERED)
            || (this == GATHERED && to == SHARDED);
    if (!ok) {
      throw new IllegalStateException(
          "parameter group of " + owner + ": illegal transition " + this + " -> " + to
              + " (a bug in the block schedule; please report it)");
    }
  }
}
