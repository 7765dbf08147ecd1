package io.bmtrain4j.zero;

/**
 * Keeps at most one gradient reduce-scatter of the block schedule in flight: block i+1's reduction
 * overlaps block i's recompute and backward, and is completed when block i submits its own.
 * One per communicator (see {@code DistContext#attachment}).
 */
public final class GradientReducer {
  private PendingReduction inFlight;

  /** Completes the reduction in flight, then leaves {@code next} in flight (or completes it too if {@code last}). */
  synchronized void submit(PendingReduction next, boolean last) {
    if (inFlight != null) {
      PendingReduction previous = inFlight;
      inFlight = null;
      previous.complete();
    }
    inFlight = next;
    if (last) {
      drain();
    }
  }

  /** Completes whatever is in flight. */
  public synchronized void drain() {
    if (inFlight != null) {
      PendingReduction p = inFlight;
      inFlight = null;
      p.complete();
    }
  }
}
