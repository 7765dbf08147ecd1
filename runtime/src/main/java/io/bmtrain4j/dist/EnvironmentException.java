package io.bmtrain4j.dist;

/** A launcher variable (RANK, WORLD_SIZE, MASTER_ADDR, ...) that is missing or malformed; the message names it. */
public final class EnvironmentException extends IllegalArgumentException {
  private static final long serialVersionUID = 1L;

  public EnvironmentException(String message) {
    super(message);
  }
}
