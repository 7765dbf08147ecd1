package io.bmtrain4j.zero;

/**
 * A wrapped forward failed on an empty tensor while parameters of other blocks were released
 * (sharded): most likely it read one of them directly. Names the released parameters.
 */
public final class ReleasedParameterException extends IllegalStateException {
  private static final long serialVersionUID = 1L;

  ReleasedParameterException(String message, Throwable cause) {
    super(message, cause);
  }
}
