package io.bmtrain4j.examples;

import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.optim.AdamOffloadOptimizer;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LibtorchOptimizer;
import io.bmtrain4j.optim.ShardedOptimizer;
import io.bmtrain4j.dist.Backend;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.function.Function;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.AdamW;
import org.bytedeco.pytorch.AdamWOptions;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch_cuda;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Optimizer step time per million parameters on the same shards: bmtrain4j's Adam, AdamOffload
 * (host copies around libtorch's fused AdamW) and libtorch's AdamW driven over the shards; with
 * bf16 or fp16 parameters on a GPU also Adam with libtorch's fused AdamW in place of the
 * mixed-precision kernel. Gradients are filled once; each variant then takes timed steps,
 * alternating in rounds.
 */
@Command(name = "optimizer-benchmark", mixinStandardHelpOptions = true, description = "Time optimizer steps.")
public final class OptimizerBenchmark implements Callable<Integer> {
  @Option(names = "--d-model", description = "width of the GPT whose parameters are optimized (default ${DEFAULT-VALUE})")
  int dModel = 512;

  @Option(names = "--layers", description = "blocks (default ${DEFAULT-VALUE})")
  int layers = 8;

  @Option(names = "--steps", description = "timed steps per variant per round (default ${DEFAULT-VALUE})")
  int steps = 5;

  @Option(names = "--rounds", description = "rounds (default ${DEFAULT-VALUE})")
  int rounds = 3;

  @Option(names = "--threads", description = "libtorch threads (default: cores per rank - 1, at least 1)")
  int threads = 0;

  @Option(names = "--device", description = "cpu, or cuda (one GPU per rank) (default ${DEFAULT-VALUE})")
  String device = "cpu";

  /** The parameters' dtype (picocli refuses any other name, listing these). */
  enum Precision {
    fp32(torch.ScalarType.Float), bf16(torch.ScalarType.BFloat16), fp16(torch.ScalarType.Half);

    final torch.ScalarType type;

    Precision(torch.ScalarType type) {
      this.type = type;
    }
  }

  @Option(names = "--dtype", description = "the parameters' dtype: ${COMPLETION-CANDIDATES} (default ${DEFAULT-VALUE})")
  Precision dtype = Precision.fp32;

  public static void main(String[] args) {
    NativeLibraries.load(); // ranks may start together: see NativeLibraries
    System.exit(new CommandLine(new OptimizerBenchmark()).execute(args));
  }

  @Override
  public Integer call() {
    boolean cuda = device.startsWith("cuda");
    InitOptions.Builder init = InitOptions.builder().seed(0);
    Bmt.initDistributed((cuda ? init.backend(Backend.NCCL) : init).build());
    String on = cuda ? "cuda:" + Bmt.context().localRank() : "cpu";
    torch.set_num_threads(threads > 0 ? threads : Threads.perRank());
    boolean mixedPrecision = dtype != Precision.fp32;
    GptConfig c = new GptConfig(256, 128, dModel, Math.max(1, dModel / 64), layers, 4 * dModel, 0.0, dtype.type).on(on);
    DistributedGpt model = new DistributedGpt(c, DistributedTransformerBlock::new);
    List<ShardedParameter> params = Bmt.parameters(model);
    long local = 0;
    for (ShardedParameter p : params) {
      local += p.localLength();
    }
    // Gradients: one backward, then reused by every step.
    try (PointerScope s = new PointerScope()) {
      TensorOptions tokens = new TensorOptions().dtype(new ScalarTypeOptional(torch.ScalarType.Long))
          .device(new DeviceOptional(new Device(on)));
      torch.cross_entropy_loss(model.forward(torch.zeros(new long[] {2, 16}, tokens)).to(torch.ScalarType.Float).reshape(-1, 256),
          torch.zeros(new long[] {32}, tokens)).backward();
      Bmt.finishBackward(model);
    }
    AdamOptions o = AdamOptions.builder().lr(1e-4).weightDecay(0.01).build();
    List<String> names = new ArrayList<>(List.of("bmtrain4j Adam", "bmtrain4j AdamOffload", "libtorch AdamW over the shards"));
    List<Function<List<ShardedParameter>, ShardedOptimizer>> makers = new ArrayList<>(List.of(
        p -> new AdamOptimizer(p, o),
        p -> new AdamOffloadOptimizer(p, o),
        p -> new LibtorchOptimizer(p, 1e-4, v -> new AdamW(v, new AdamWOptions(1e-4)), null)));
    if (cuda && mixedPrecision) {
      // Side by side with the default, which updates bf16/fp16 parameters with the mixed-precision kernel.
      names.add(1, "bmtrain4j Adam, libtorch's fused AdamW");
      makers.add(1, p -> new AdamOptimizer(p, AdamOptions.builder().lr(1e-4).weightDecay(0.01).mixedPrecisionKernel(false).build()));
    }
    ShardedOptimizer[] opts = new ShardedOptimizer[makers.size()];
    Runnable finish = cuda ? () -> torch_cuda.getCurrentCUDAStream().synchronize() : () -> { };
    for (int i = 0; i < opts.length; i++) {
      opts[i] = makers.get(i).apply(params);
    }
    double[][] ms = new double[opts.length][rounds];
    for (int r = 0; r < rounds; r++) {
      for (int i = 0; i < opts.length; i++) {
        opts[i].step(1.0); // warm-up step of this round
        finish.run();
        long t0 = System.nanoTime();
        for (int k = 0; k < steps; k++) {
          try (PointerScope s = new PointerScope()) {
            opts[i].step(1.0);
          }
        }
        finish.run();
        ms[i][r] = (System.nanoTime() - t0) / 1e6 / steps;
      }
    }
    Bmt.printRank("%,d %s parameters on this rank (world %d, %s), %d libtorch threads", local, dtype, Bmt.worldSize(), on,
        torch.get_num_threads());
    for (int i = 0; i < opts.length; i++) {
      double[] sorted = ms[i].clone();
      Arrays.sort(sorted);
      double median = sorted[sorted.length / 2];
      Bmt.printRank("%-40s %8.2f ms/step  %6.2f ms per million parameters  rounds %s", names.get(i), median,
          median / (local / 1e6), Arrays.toString(Arrays.stream(ms[i]).mapToLong(Math::round).toArray()));
      opts[i].close();
    }
    return 0;
  }
}
