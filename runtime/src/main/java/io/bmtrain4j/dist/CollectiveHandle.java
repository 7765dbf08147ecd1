package io.bmtrain4j.dist;

/** A collective in flight. {@link #await()} is idempotent; it rethrows the collective's failure. */
public interface CollectiveHandle {
  /** Blocks (CPU) or orders the current stream (GPU) until the collective has completed. */
  void await();

  boolean isCompleted();

  /** A handle for work that completed synchronously. */
  static CollectiveHandle completed() {
    return Completed.INSTANCE;
  }

  /** The already-completed handle. */
  enum Completed implements CollectiveHandle {
    INSTANCE;

    @Override
    public void await() {}

    @Override
    public boolean isCompleted() {
      return true;
    }
  }
}
