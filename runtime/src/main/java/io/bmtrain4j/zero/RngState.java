package io.bmtrain4j.zero;

import io.bmtrain4j.internal.Native;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The generators' state, so that a recompute draws the same dropout masks as the forward: the
 * CPU generator always, and the GPU's when the block lives on one (CUDA ops draw from it).
 */
final class RngState implements AutoCloseable {
  private final Tensor cpu;
  private final Device device;
  private final Tensor deviceState;

  private RngState(Tensor cpu, Device device, Tensor deviceState) {
    this.cpu = cpu;
    this.device = device;
    this.deviceState = deviceState;
  }

  /** Captures the CPU generator, and {@code blockDevice}'s when it is a GPU. */
  static RngState capture(Device blockDevice) {
    Tensor cpu = Native.own(torch.getDefaultCPUGenerator().get_state());
    if (blockDevice == null || !blockDevice.is_cuda()) {
      return new RngState(cpu, null, null);
    }
    Device d = Native.own(new Device(blockDevice.str().getString()));
    return new RngState(cpu, d, Native.own(torch.globalContext().defaultGenerator(d).get_state()));
  }

  void restore() {
    torch.getDefaultCPUGenerator().set_state(cpu);
    if (device != null) {
      torch.globalContext().defaultGenerator(device).set_state(deviceState);
    }
  }

  @Override
  public void close() {
    cpu.close();
    if (device != null) {
      deviceState.close();
      device.close();
    }
  }
}
