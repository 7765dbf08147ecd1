package io.bmtrain4j.store;

import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;

/** File I/O goes through host memory: device tensors are staged in contiguous CPU copies. */
final class Host {
  private Host() {}

  /** A contiguous CPU tensor with {@code t}'s values ({@code t} itself when it already is one). */
  static Tensor copy(Tensor t) {
    Tensor d = t.detach();
    return d.is_cuda() ? d.to(new Device("cpu"), d.scalar_type()).contiguous() : d.contiguous();
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
