package io.bmtrain4j.natives;

/** libtorch's natives could not be unpacked or loaded; the message names the file and the fix. */
public final class NativeLibraryException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public NativeLibraryException(String message) {
    super(message);
  }

  public NativeLibraryException(String message, Throwable cause) {
    super(message, cause);
  }
}
