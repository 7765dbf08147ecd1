package io.bmtrain4j.examples;

import io.bmtrain4j.Bmt;

/** How many libtorch intra-op threads a rank should use. */
final class Threads {
  private Threads() {}

  /**
   * The cores of this machine divided among its ranks, less one for the JVM and Gloo's threads,
   * at least 1. libtorch's default (every core) was 2.3x slower than 1 thread on a 2-core VM, where
   * its threads compete with the JVM's.
   */
  static int perRank() {
    int cores = Runtime.getRuntime().availableProcessors();
    return Math.max(1, cores / Math.max(1, Bmt.context().localWorldSize()) - 1);
  }
}
