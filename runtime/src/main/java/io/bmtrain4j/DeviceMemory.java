package io.bmtrain4j;

import io.bmtrain4j.internal.CudaAllocator;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * The CUDA caching allocator's figures for this rank's GPU, as {@code torch.cuda.memory_stats()}
 * gives them: bytes allocated to tensors and reserved from the driver, now and at their peak since
 * the last {@link #resetPeak()}; and {@code allocRetries}, the times since the process started that
 * an allocation found no free block, so that the allocator released its cache and retried
 * ({@code num_alloc_retries}: each one waits for the device; many mean the run is at the memory's
 * edge). {@link #retriesSince} counts them between two readings.
 */
public record DeviceMemory(int device, long allocatedBytes, long peakAllocatedBytes, long reservedBytes,
    long peakReservedBytes, long allocRetries) {

  /** Figures without a retry count (0). */
  public DeviceMemory(int device, long allocatedBytes, long peakAllocatedBytes, long reservedBytes, long peakReservedBytes) {
    this(device, allocatedBytes, peakAllocatedBytes, reservedBytes, peakReservedBytes, 0);
  }

  /** Reads the allocator's statistics for the current CUDA device. */
  public static DeviceMemory current() {
    byte device = torch_cuda.current_device();
    CudaAllocator.Figures f = CudaAllocator.figures(device);
    return new DeviceMemory(device, f.allocated(), f.peakAllocated(), f.reserved(), f.peakReserved(), f.allocRetries());
  }

  /** These figures with {@link #allocRetries} counted from {@code earlier}'s: the retries between the two readings. */
  public DeviceMemory retriesSince(DeviceMemory earlier) {
    return new DeviceMemory(device, allocatedBytes, peakAllocatedBytes, reservedBytes, peakReservedBytes,
        allocRetries - earlier.allocRetries);
  }

  /** Starts a new peak window (torch.cuda.reset_peak_memory_stats). */
  public static void resetPeak() {
    CudaAllocator.resetPeak(torch_cuda.current_device());
  }

  @Override
  public String toString() {
    return String.format("cuda:%d allocated %.2f GiB (peak %.2f), reserved %.2f GiB (peak %.2f)%s", device,
        gib(allocatedBytes), gib(peakAllocatedBytes), gib(reservedBytes), gib(peakReservedBytes),
        allocRetries == 0 ? "" : ", " + allocRetries + " allocator retries");
  }

  private static double gib(long bytes) {
    return bytes / (1024.0 * 1024.0 * 1024.0);
  }
}
