package io.bmtrain4j.store;

import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** File I/O goes through host memory: device tensors are staged in contiguous CPU copies. */
final class Host {
  private Host() {}

  /** A contiguous CPU tensor with {@code t}'s values ({@code t} itself when it already is one). */
  static Tensor copy(Tensor t) {
    Tensor d = t.detach();
    return d.is_cuda() ? d.to(new Device("cpu"), d.scalar_type()).contiguous() : d.contiguous();
  }

  /**
   * A contiguous CPU copy of {@code t} that later changes to {@code t} do not reach, in
   * {@code buffers.get(key)} when that one has its shape and dtype (else a new one, kept there):
   * pinned memory when {@code t} is on a GPU, so the copy runs at full speed. The copy is complete
   * when this returns.
   */
  static Tensor snapshotInto(java.util.Map<String, Tensor> buffers, String key, Tensor t) {
    Tensor d = t.detach();
    Tensor host = buffers.get(key);
    if (host == null || host.scalar_type().value != d.scalar_type().value
        || !java.util.Arrays.equals(host.sizes().vec().get(), d.sizes().vec().get())) {
      if (host != null) {
        host.close();
      }
      org.bytedeco.pytorch.TensorOptions options = new org.bytedeco.pytorch.TensorOptions()
          .dtype(new org.bytedeco.pytorch.ScalarTypeOptional(d.scalar_type()));
      if (d.is_cuda()) {
        options = options.pinned_memory(new org.bytedeco.pytorch.BoolOptional(true));
      }
      host = io.bmtrain4j.internal.Native.own(torch.empty(d.sizes().vec().get(), options, new org.bytedeco.pytorch.MemoryFormatOptional()));
      buffers.put(key, host);
    }
    host.copy_(d); // blocking: complete before training changes t again
    return host;
  }

  /** Where to read bytes meant for {@code target}: itself on the CPU, else a CPU buffer of its shape. */
  static Tensor staging(Tensor target) {
    return target.is_cuda() ? target.to(new Device("cpu"), target.scalar_type()) : target;
  }

  /** Moves what was read into {@code host} to {@code target} when they differ. */
  static void finish(Tensor host, Tensor target) {
    if (host != target) {
      target.copy_(host);
    }
  }
}
