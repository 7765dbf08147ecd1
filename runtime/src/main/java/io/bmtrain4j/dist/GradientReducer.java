package io.bmtrain4j.dist;

/**
 * Keeps at most one gradient reduce-scatter of the block schedule in flight: block i+1's reduction
 * overlaps block i's recompute and backward, and is completed when block i submits its own.
 * One per job, held by its {@link CommContext}.
 */
public final class GradientReducer {
  private PendingCollective inFlight;

  /** Completes the reduction in flight, then leaves {@code next} in flight (or completes it too if {@code last}). */
  public synchronized void submit(PendingCollective next, boolean last) {
    drain();
    inFlight = next;
    if (last) {
      drain();
    }
  }

  /** Completes whatever is in flight. */
  public synchronized void drain() {
    if (inFlight != null) {
      PendingCollective p = inFlight;
      inFlight = null;
      p.complete();
    }
  }
}
