package io.bmtrain4j.examples.bench;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.dist.Backend;
import org.bytedeco.pytorch.global.torch_cuda;
import picocli.CommandLine.Option;

/**
 * Where a benchmark main runs (a picocli mixin, shared by the GPT and LLaMA benchmarks): the
 * device, the attention preference, joining the job, and a clock that waits for the device.
 */
public class BenchDevice {
  @Option(names = "--device", description = "cuda (NCCL, one GPU per rank) or cpu (Gloo, a smoke test) (default ${DEFAULT-VALUE})")
  String deviceKind = "cuda";

  // picocli gives a negatable option the opposite of its default under its declared name: a
  // switch that is on by default is declared by its --no- form.
  @Option(names = "--no-cudnn-attention", negatable = true,
      description = "attention tries cuDNN first on H100/H200, as PyTorch does (default ${DEFAULT-VALUE})")
  boolean cudnnAttention = true;

  @Option(names = "--separate-reduce-stream",
      description = "NCCL reductions on a communicator and stream of their own (InitOptions.separateReduceStream)")
  boolean separateReduceStream;

  boolean onGpu() {
    return deviceKind.equals("cuda");
  }

  /** Waits for this rank's device to finish what was queued on it (on a GPU), then reads the clock. */
  long synchronizedNanos() {
    if (onGpu()) {
      torch_cuda.getCurrentCUDAStream().synchronize();
    }
    return System.nanoTime();
  }

  /** Joins the job: NCCL on GPUs, Gloo on the CPU, seed 0, this attention preference and reduce stream. */
  void initDistributed() {
    Bmt.initDistributed(InitOptions.builder().seed(0).backend(onGpu() ? Backend.NCCL : Backend.GLOO)
        .preferCudnnAttention(cudnnAttention).separateReduceStream(separateReduceStream).build());
  }
}
