package io.bmtrain4j.examples.init;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * One rank of the peak-memory test: constructs a 4 x 16 MiB-block model with deferred parameters
 * and initialises it, then reports how far its peak resident memory (VmHWM) rose meanwhile.
 */
public final class InitMemoryWorker {
  private InitMemoryWorker() {}

  static double hwmMiB() throws Exception {
    for (String l : Files.readAllLines(Path.of("/proc/self/status"))) {
      if (l.startsWith("VmHWM")) {
        return Long.parseLong(l.replaceAll("[^0-9]", "")) / 1024.0;
      }
    }
    throw new IllegalStateException("no VmHWM");
  }

  public static void main(String[] args) throws Exception {
    Bmt.initDistributed(InitOptions.builder().seed(1).build());
    new DistributedDeferredNet(8, 64, 1); // warm up libtorch's allocator and the classes
    System.gc();
    double before = hwmMiB();
    int d = 2048;
    DeferredNet net = new DistributedDeferredNet(d, d, 4);
    double constructed = hwmMiB() - before;
    Bmt.initParameters(net);
    System.out.printf("rank %d: construction grew the peak by %.1f MiB%n", Bmt.rank(), constructed);
    double growth = hwmMiB() - before;
    double block = (d * (double) d + d) * 4 / 1048576.0;
    double model = (d * (double) d + d + 4 * (d * (double) d + d)) * 4 / 1048576.0;
    System.out.printf("rank %d: peak growth %.1f MiB, model %.1f MiB, shard %.1f MiB, block %.1f MiB%n",
        Bmt.rank(), growth, model, model / Bmt.worldSize(), block);
    Runtime.getRuntime().halt(0);
  }
}
