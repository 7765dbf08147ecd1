package io.bmtrain4j.examples.bench;

import picocli.CommandLine.Option;

/**
 * The GPT workload both GPT benchmark mains time (a picocli mixin): the preset and its shape, on
 * a {@link BenchDevice}. Their defaults are the 1.3B comparison of issue 7, and the same flags
 * go to the Python references in {@code bench/}.
 */
public final class GptWorkload extends BenchDevice {
  @Option(names = "--model", description = "preset: ${COMPLETION-CANDIDATES} (default ${DEFAULT-VALUE})",
      completionCandidates = io.bmtrain4j.examples.Train.Presets.class)
  String model = "1.3b";

  @Option(names = "--seq", description = "sequence length (default ${DEFAULT-VALUE})")
  int seq = 2048;

  @Option(names = "--vocab", description = "vocabulary (default ${DEFAULT-VALUE})")
  int vocab = 50304;

  @Option(names = "--micro-batch", description = "sequences per GPU per step (default ${DEFAULT-VALUE})")
  int microBatch = 8;
}
