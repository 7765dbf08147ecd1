package io.bmtrain4j.internal;

import org.bytedeco.pytorch.cuda.DeviceStats;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * The CUDA caching allocator's statistics for one GPU, as {@code torch.cuda.memory_stats()} gives
 * them: read here once for the public {@code DeviceMemory} and the activation budget's meter.
 */
public final class CudaAllocator {
  private CudaAllocator() {}

  /**
   * Bytes allocated to tensors and reserved from the driver, now and at their peak since {@link
   * #resetPeak}; and how often, since the process started, an allocation found no free block and
   * the allocator freed its cache to retry (each one synchronises the device: a sign of running at
   * the memory's edge).
   */
  public record Figures(long allocated, long peakAllocated, long reserved, long peakReserved, long allocRetries) {}

  public static Figures figures(byte device) {
    try (DeviceStats stats = torch_cuda.getAllocator().getDeviceStats(device)) {
      // allocated_bytes()/reserved_bytes() are StatArrays; their first entry is the aggregate over pools.
      return new Figures(stats.allocated_bytes().current(), stats.allocated_bytes().peak(),
          stats.reserved_bytes().current(), stats.reserved_bytes().peak(), stats.num_alloc_retries());
    }
  }

  /** Starts a new peak window (torch.cuda.reset_peak_memory_stats). */
  public static void resetPeak(byte device) {
    torch_cuda.getAllocator().resetPeakStats(device);
  }
}
