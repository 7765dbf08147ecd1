package io.bmtrain4j;

/**
 * Bytes this rank holds for a model: parameter shards, gradient storage (shard gradients plus
 * flat buffers being filled) and gathered (whole) parameter buffers alive now; on a GPU also the
 * CUDA allocator's statistics ({@code device}, null on the CPU); and what the activation budget
 * chose to keep for backward ({@code activationPlan}, null without a budget or before its probe
 * step).
 */
public record MemoryReport(int rank, long parameterBytes, long gradientBytes, long gatheredBytes, long totalParameters,
    DeviceMemory device, io.bmtrain4j.zero.ActivationPlan activationPlan) {
  @Override
  public String toString() {
    return String.format("rank %d: parameters %s, gradients %s, gathered %s (model %,d parameters)%s",
        rank, mib(parameterBytes), mib(gradientBytes), mib(gatheredBytes), totalParameters,
        device == null ? "" : "; " + device) + (activationPlan == null ? "" : "; " + activationPlan.describe());
  }

  private static String mib(long bytes) {
    return String.format("%.2f MiB", bytes / (1024.0 * 1024.0));
  }
}
