package io.bmtrain4j.internal;

import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.Structure;

/**
 * The bytes glibc's malloc has handed out and not taken back, in this whole process: libtorch's
 * CPU tensors come from it, so the change across a block's forward is what its activations hold.
 * Other threads' allocations (the JVM's compilers, other ranks run as threads) land in the same
 * count; measure where they are quiet, or several times.
 */
public final class HostMalloc {
  private HostMalloc() {}

  /** glibc's {@code struct mallinfo2} (glibc 2.33 and later): ten {@code size_t} counters. */
  @Structure.FieldOrder({"arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
      "keepcost"})
  public static class MallInfo2 extends Structure implements Structure.ByValue {
    public long arena;
    public long ordblks;
    public long smblks;
    public long hblks;
    public long hblkhd; // bytes in blocks mapped on their own (large tensors)
    public long usmblks;
    public long fsmblks;
    public long uordblks; // bytes in use in the heaps
    public long fordblks;
    public long keepcost;
  }

  interface LibC extends Library {
    MallInfo2 mallinfo2();
  }

  private static volatile LibC libc;
  private static volatile String unavailable;

  /** Bytes allocated now; throws where the C library has no {@code mallinfo2} (not glibc, or older than 2.33). */
  public static long allocatedBytes() {
    LibC c = load();
    MallInfo2 info = c.mallinfo2();
    return info.uordblks + info.hblkhd;
  }

  private static LibC load() {
    if (libc == null && unavailable == null) {
      synchronized (HostMalloc.class) {
        if (libc == null && unavailable == null) {
          try {
            LibC c = Native.load("c", LibC.class);
            c.mallinfo2();
            libc = c;
          } catch (UnsatisfiedLinkError | RuntimeException e) {
            unavailable = String.valueOf(e.getMessage());
          }
        }
      }
    }
    if (libc == null) {
      throw new UnsupportedOperationException("measuring host memory needs glibc 2.33 or later (mallinfo2), which this"
          + " system lacks (" + unavailable + "): give the activation plan by hand, or run on a GPU");
    }
    return libc;
  }
}
