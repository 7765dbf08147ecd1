package io.bmtrain4j.dist;

import io.bmtrain4j.internal.Native;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.bytedeco.pytorch.cuda.CUDAEvent;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * How long the consumers of collectives waited for them: the part of the communication that
 * overlap did <em>not</em> hide. Off until {@link #start()}; while on, every collective of the
 * communicator it watches is counted, and every first {@code await()} is timed:
 * <ul>
 *   <li>on a GPU, by two timing events on the waiting (compute) stream, one recorded before the
 *       stream is made to wait on the collective and one after. The gap between them is how long
 *       the stream stood still; nothing synchronises the host until {@link #stop()} reads them;</li>
 *   <li>on the CPU, by the host's wall time inside {@code await()} (Gloo's wait blocks the caller).</li>
 * </ul>
 * The hidden share of a kind of collective is then {@code 1 - waited / (its time alone)}, where
 * "alone" comes from issuing the same collectives back to back (the benchmarks do both). On the
 * CPU the wait includes the completion work Gloo's handle does on the caller's thread (an AVG's
 * division). While on, a GPU wait holds two events until {@link #stop()}: measure a bounded span.
 */
public final class CollectiveWaits {
  private static final int TIMING = 0; // cudaEventDefault: the events can be timed against each other

  private volatile boolean on;
  private final Map<String, Tally> tallies = new LinkedHashMap<>();
  private final List<GpuWait> gpuWaits = new ArrayList<>();

  /** Clears the figures and starts counting and timing. */
  public synchronized void start() {
    clear();
    on = true;
  }

  /**
   * Stops, and returns what was counted since {@link #start()}. On a GPU this synchronises the
   * device once, to read the events.
   */
  public synchronized Report stop() {
    on = false;
    if (!gpuWaits.isEmpty()) {
      torch_cuda.getCurrentCUDAStream().synchronize();
      for (GpuWait w : gpuWaits) {
        w.before.synchronize();
        w.after.synchronize();
        w.tally.waitedNanos += (long) (w.before.elapsed_time(w.after) * 1e6);
      }
    }
    List<Kind> kinds = new ArrayList<>();
    tallies.forEach((name, t) -> kinds.add(new Kind(name, t.issued, t.bytes, t.awaited, t.waitedNanos)));
    clear();
    return new Report(List.copyOf(kinds));
  }

  boolean on() {
    return on;
  }

  private void clear() {
    for (GpuWait w : gpuWaits) {
      w.before.close();
      w.after.close();
    }
    gpuWaits.clear();
    tallies.clear();
  }

  synchronized Tally issued(String kind, long bytes) {
    Tally t = tallies.computeIfAbsent(kind, k -> new Tally());
    t.issued++;
    t.bytes += bytes;
    return t;
  }

  /** Awaits {@code inner}, timing how long the caller (its stream, on a GPU) was held up. */
  void timeAwait(Tally tally, CollectiveHandle inner, boolean cuda) {
    if (!cuda) {
      long start = System.nanoTime();
      inner.await();
      synchronized (this) {
        if (on) {
          tally.awaited++;
          tally.waitedNanos += System.nanoTime() - start;
        }
      }
      return;
    }
    // Owned: the events outlive the step's PointerScope until stop() reads them.
    CUDAEvent before = Native.own(new CUDAEvent(TIMING));
    CUDAEvent after = Native.own(new CUDAEvent(TIMING));
    boolean kept = false;
    try {
      before.record(torch_cuda.getCurrentCUDAStream());
      inner.await();
      after.record(torch_cuda.getCurrentCUDAStream());
      synchronized (this) {
        if (on) { // a stop() meanwhile has read and cleared the figures: this wait is not counted
          tally.awaited++;
          gpuWaits.add(new GpuWait(tally, before, after));
          kept = true;
        }
      }
    } finally {
      if (!kept) {
        before.close();
        after.close();
      }
    }
  }

  static final class Tally {
    long issued;
    long bytes;
    long awaited;
    long waitedNanos;
  }

  private record GpuWait(Tally tally, CUDAEvent before, CUDAEvent after) {}

  /** One kind of collective: how many were issued (and their input bytes), how many awaited, and how long that took. */
  public record Kind(String name, long issued, long bytes, long awaited, long waitedNanos) {
    public double waitedMillis() {
      return waitedNanos / 1e6;
    }
  }

  /** What {@link #stop()} returns: one entry per kind of collective issued, in the order first seen. */
  public record Report(List<Kind> kinds) {
    /** The figures of {@code name} ("all-gather", "reduce-scatter", ...); zeros if none was issued. */
    public Kind kind(String name) {
      for (Kind k : kinds) {
        if (k.name().equals(name)) {
          return k;
        }
      }
      return new Kind(name, 0, 0, 0, 0);
    }

    /** One line, e.g. {@code all-gather: 49 issued (2.40 GiB), waited 7.5 ms; reduce-scatter: ...}; divided by {@code steps}. */
    public String describe(int steps) {
      if (kinds.isEmpty()) {
        return "no collectives";
      }
      StringBuilder s = new StringBuilder();
      for (Kind k : kinds) {
        if (s.length() > 0) {
          s.append("; ");
        }
        s.append(String.format(Locale.ROOT, "%s: %.1f issued (%.2f GiB), waited %.2f ms", k.name(),
            k.issued() / (double) steps, k.bytes() / (double) steps / (1L << 30), k.waitedMillis() / steps));
      }
      return s.append(steps == 1 ? "" : " (per step, mean of " + steps + ")").toString();
    }
  }
}
