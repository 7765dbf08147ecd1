package io.bmtrain4j.zero;

import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** The default generator's state, so that a recompute draws the same dropout masks as the forward. */
final class RngState implements AutoCloseable {
  private final Tensor cpu;

  private RngState(Tensor cpu) {
    this.cpu = cpu;
  }

  static RngState capture() {
    Generator g = torch.getDefaultCPUGenerator();
    return new RngState(io.bmtrain4j.internal.Native.own(g.get_state()));
  }

  void restore() {
    torch.getDefaultCPUGenerator().set_state(cpu);
  }

  @Override
  public void close() {
    cpu.close();
  }
}
