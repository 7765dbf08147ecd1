package io.bmtrain4j.dist;

/** A collective in flight whose result still has to be taken (waited for, and its buffers freed). */
public interface PendingCollective {
  /** Waits for the collective and finishes its work; a second call does nothing. */
  void complete();
}
