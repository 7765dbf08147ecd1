package io.bmtrain4j.examples.bench;

import io.bmtrain4j.dist.Backend;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import org.bytedeco.pytorch.global.torch_cuda;
import picocli.CommandLine.Option;

/**
 * The GPT workload both GPU benchmark mains time (a picocli mixin): the preset, its shape, the
 * device and the attention preference. Their defaults are the 1.3B comparison of issue 7, and
 * the same flags go to the Python references in {@code bench/}.
 */
public final class GptWorkload {
  @Option(names = "--model", description = "preset: ${COMPLETION-CANDIDATES} (default ${DEFAULT-VALUE})",
      completionCandidates = io.bmtrain4j.examples.Train.Presets.class)
  String model = "1.3b";

  @Option(names = "--seq", description = "sequence length (default ${DEFAULT-VALUE})")
  int seq = 2048;

  @Option(names = "--vocab", description = "vocabulary (default ${DEFAULT-VALUE})")
  int vocab = 50304;

  @Option(names = "--micro-batch", description = "sequences per GPU per step (default ${DEFAULT-VALUE})")
  int microBatch = 8;

  @Option(names = "--device", description = "cuda (NCCL, one GPU per rank) or cpu (Gloo, a smoke test) (default ${DEFAULT-VALUE})")
  String deviceKind = "cuda";

  // picocli gives a negatable option the opposite of its default under its declared name: a
  // switch that is on by default is declared by its --no- form.
  @Option(names = "--no-cudnn-attention", negatable = true,
      description = "attention tries cuDNN first on H100/H200, as PyTorch does (default ${DEFAULT-VALUE})")
  boolean cudnnAttention = true;

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

  /** Joins the job: NCCL on GPUs, Gloo on the CPU, seed 0, this attention preference. */
  void initDistributed() {
    Bmt.initDistributed(InitOptions.builder().seed(0).backend(onGpu() ? Backend.NCCL : Backend.GLOO)
        .preferCudnnAttention(cudnnAttention).build());
  }
}
