package io.bmtrain4j.zero;

import io.bmtrain4j.internal.CudaAllocator;
import io.bmtrain4j.internal.HostMalloc;
import org.bytedeco.cuda.global.cudart;
import org.bytedeco.javacpp.SizeTPointer;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * Bytes held by tensors on a block's device, for the activation budget's probe step: now, at
 * their peak since {@link #resetPeak}, and the device's capacity. On a GPU these are the CUDA
 * caching allocator's exact figures; on the CPU, glibc's ({@link HostMalloc}), whose peak is the
 * largest of the readings taken ({@link #allocated} records each).
 */
abstract class MemoryMeter {
  /** Bytes allocated now. Synchronises a GPU first, so a timer read after it is meaningful too. */
  abstract long allocated();

  abstract long peak();

  abstract void resetPeak();

  /** What the device holds in all: a GPU's memory, or the host's. */
  abstract long capacity();

  static MemoryMeter on(Device device) {
    return device != null && device.is_cuda() ? new Cuda(device.index()) : new Host();
  }

  private static final class Cuda extends MemoryMeter {
    private final byte device;

    Cuda(int index) {
      this.device = index >= 0 ? (byte) index : torch_cuda.current_device(); // "cuda": the current GPU
    }

    @Override
    long allocated() {
      torch_cuda.getCurrentCUDAStream().synchronize();
      return CudaAllocator.figures(device).allocated();
    }

    @Override
    long peak() {
      return CudaAllocator.figures(device).peakAllocated();
    }

    @Override
    void resetPeak() {
      CudaAllocator.resetPeak(device);
    }

    @Override
    long capacity() {
      try (SizeTPointer free = new SizeTPointer(1); SizeTPointer total = new SizeTPointer(1)) {
        int status = cudart.cudaMemGetInfo(free, total);
        if (status != 0) {
          throw new IllegalStateException("cudaMemGetInfo failed with CUDA error " + status);
        }
        return total.get();
      }
    }
  }

  private static final class Host extends MemoryMeter {
    private long peak;

    @Override
    synchronized long allocated() {
      long now = HostMalloc.allocatedBytes();
      peak = Math.max(peak, now);
      return now;
    }

    @Override
    synchronized long peak() {
      return peak;
    }

    @Override
    synchronized void resetPeak() {
      peak = HostMalloc.allocatedBytes();
    }

    @Override
    long capacity() {
      return org.bytedeco.javacpp.Pointer.totalPhysicalBytes();
    }
  }
}
