package io.bmtrain4j;

/**
 * Bytes this rank holds for a model: parameter shards, gradient storage (shard gradients plus
 * flat buffers being filled) and gathered (whole) parameter buffers alive now.
 */
public record MemoryReport(int rank, long parameterBytes, long gradientBytes, long gatheredBytes, long totalParameters) {
  @Override
  public String toString() {
    return String.format("rank %d: parameters %s, gradients %s, gathered %s (model %,d parameters)",
        rank, mib(parameterBytes), mib(gradientBytes), mib(gatheredBytes), totalParameters);
  }

  private static String mib(long bytes) {
    return String.format("%.2f MiB", bytes / (1024.0 * 1024.0));
  }
}
