package io.bmtrain4j.internal;

import com.sun.jna.Library;
import com.sun.jna.Native;

/**
 * The process environment that native libraries read with {@code getenv} (Java's
 * {@code System.getenv} is a copy and cannot be changed): through the C library's {@code setenv}.
 */
public final class NativeEnvironment {
  private NativeEnvironment() {}

  interface LibC extends Library {
    int setenv(String name, String value, int overwrite);
  }

  /** Sets {@code name} for native code unless the user already set it; true if it now holds {@code value}. */
  public static boolean setIfAbsent(String name, String value) {
    String current = System.getenv(name);
    if (current != null) {
      return current.equals(value);
    }
    LibC c = Native.load("c", LibC.class);
    return c.setenv(name, value, 0) == 0;
  }
}
