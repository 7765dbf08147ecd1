package io.bmtrain4j.dist;

/** A collective failed: a peer died, timed out or disagreed. The message names the collective and the rank. */
public final class CollectiveException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public CollectiveException(String message, Throwable cause) {
    super(message, cause);
  }

  public CollectiveException(String message) {
    super(message);
  }
}
