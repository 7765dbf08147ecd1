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
   * A contiguous CPU copy of {@code t} that later changes to {@code t} do not reach: in pinned
   * memory when {@code t} is on a GPU, so the copy runs at full speed.
   */
  static Tensor snapshot(Tensor t) {
    Tensor d = t.detach();
    if (!d.is_cuda()) {
      return d.contiguous().clone();
    }
    Tensor host = torch.empty(d.sizes().vec().get(), new org.bytedeco.pytorch.TensorOptions()
        .dtype(new org.bytedeco.pytorch.ScalarTypeOptional(d.scalar_type()))
        .pinned_memory(new org.bytedeco.pytorch.BoolOptional(true)), new org.bytedeco.pytorch.MemoryFormatOptional());
    host.copy_(d); // blocking: the copy is complete when training changes t again
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
