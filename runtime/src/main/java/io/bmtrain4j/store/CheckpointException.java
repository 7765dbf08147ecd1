package io.bmtrain4j.store;

/** A checkpoint cannot be read or does not match the model; the message names the file or key. */
public final class CheckpointException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public CheckpointException(String message) {
    super(message);
  }

  public CheckpointException(String message, Throwable cause) {
    super(message, cause);
  }
}
