package io.bmtrain4j.dist;

/** Argument checks shared by the communicators, so every backend rejects bad input the same way. */
final class CollectiveArguments {
  private CollectiveArguments() {}

  /** {@code whole} must be exactly {@code world} times {@code part}. */
  static void checkSizes(String collective, long whole, long part, int world) {
    if (whole != part * world) {
      throw new IllegalArgumentException(
          collective + ": the larger buffer has " + whole + " elements but must have world size ("
              + world + ") x " + part + " = " + (part * world));
    }
  }

  static void checkPeer(String collective, int peer, int world) {
    if (peer < 0 || peer >= world) {
      throw new IllegalArgumentException(collective + ": rank " + peer + " is outside [0, " + world + ")");
    }
  }
}
