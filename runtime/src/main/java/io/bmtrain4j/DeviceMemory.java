package io.bmtrain4j;

import io.bmtrain4j.internal.CudaAllocator;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * The CUDA caching allocator's figures for this rank's GPU, as {@code torch.cuda.memory_stats()}
 * gives them: bytes allocated to tensors and reserved from the driver, now and at their peak since
 * the last {@link #resetPeak()}.
 */
public record DeviceMemory(int device, long allocatedBytes, long peakAllocatedBytes, long reservedBytes,
    long peakReservedBytes) {

  /** Reads the allocator's statistics for the current CUDA device. */
  public static DeviceMemory current() {
    byte device = torch_cuda.current_device();
    CudaAllocator.Figures f = CudaAllocator.figures(device);
    return new DeviceMemory(device, f.allocated(), f.peakAllocated(), f.reserved(), f.peakReserved());
  }

  /** Starts a new peak window (torch.cuda.reset_peak_memory_stats). */
  public static void resetPeak() {
    CudaAllocator.resetPeak(torch_cuda.current_device());
  }

  @Override
  public String toString() {
    return String.format("cuda:%d allocated %.2f GiB (peak %.2f), reserved %.2f GiB (peak %.2f)", device,
        gib(allocatedBytes), gib(peakAllocatedBytes), gib(reservedBytes), gib(peakReservedBytes));
  }

  private static double gib(long bytes) {
    return bytes / (1024.0 * 1024.0 * 1024.0);
  }
}
