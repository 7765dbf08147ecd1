package io.bmtrain4j.examples.bench;

import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.dist.CollectiveWaits;
import io.bmtrain4j.DeviceMemory;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.examples.gpt.TransformerBlock;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LossScale;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.zero.ActivationBudget;
import io.bmtrain4j.zero.ActivationMode;
import io.bmtrain4j.zero.ActivationPlan;
import io.bmtrain4j.zero.BlockOptions;
import java.util.Map;
import java.util.function.Consumer;
import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedModuleRuntime;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * GPU training throughput of the example GPT under bmtrain4j (ZeRO-3, recompute, bf16 parameters,
 * fp32 Adam masters), for the side-by-side comparison with PyTorch FSDP2 in {@code bench/}. One
 * step is forward, backward, gradient reduction and the optimizer step. Run one JVM per GPU under
 * torchrun; every rank processes {@code --micro-batch} sequences per step.
 *
 * <p>Prints tokens/s per GPU, MFU (6·N·T plus attention, recompute not counted) and the CUDA
 * allocator's peak memory, with prefetch on and off in alternating rounds of one run, and the
 * time the step's all-gathers take on their own, from which the fraction hidden by prefetch
 * follows. The last line, starting with {@code RESULT}, is what {@code bench/gpu-compare.sh}
 * collects.
 */
@Command(name = "gpt-throughput", mixinStandardHelpOptions = true, description = "GPT training throughput on GPUs.")
public final class GptThroughput implements Callable<Integer> {
  @Mixin GptWorkload workload = new GptWorkload();

  @Option(names = "--steps", description = "timed steps per round (default ${DEFAULT-VALUE})")
  int steps = 10;

  @Option(names = "--warmup", description = "untimed steps before the first round (default ${DEFAULT-VALUE})")
  int warmup = 3;

  @Option(names = "--rounds", description = "rounds; prefetch on and off alternate within a round (default ${DEFAULT-VALUE})")
  int rounds = 2;

  @Option(names = "--no-prefetch-rounds", negatable = true, description = "also time prefetch off (default ${DEFAULT-VALUE})")
  boolean prefetchOff = true;

  @Option(names = "--no-full-recompute-rounds", negatable = true,
      description = "also time recompute without early stop, the last matmul recomputed (default ${DEFAULT-VALUE})")
  boolean fullRecompute = true;

  @Option(names = "--activation-rounds", negatable = true,
      description = "also time every block selective (attention kept), every block kept, and the activation budget (default ${DEFAULT-VALUE})")
  boolean activationRounds;

  @Option(names = "--activation-budget", description = "the budget of the budget rounds (default ${DEFAULT-VALUE})")
  String budget = "90%";

  @Option(names = "--variants", split = ",", description = "time only these of the variants the other options ask for"
      + " (names as printed, e.g. prefetch,budget; the first listed gives the RESULT impl=bmtrain4j line and the phases;"
      + " budget, if listed, last)")
  List<String> onlyVariants;

  @Option(names = "--libtorch-adam", description = "update the bf16 parameters with libtorch's fused AdamW on fp32"
      + " gradient copies instead of bmtrain4j's mixed-precision kernel (the kernel's A/B)")
  boolean libtorchAdam;

  /** One timed setting: its name in the output, the blocks' options, and what they keep for backward. */
  private record Variant(String name, BlockOptions options, Consumer<DistributedGpt> plan) {}

  /** Lifts whatever an earlier variant set: every block as its options say (recompute). */
  private static final Consumer<DistributedGpt> ALL_RECOMPUTE = g -> {
    Bmt.activationBudget(g, null);
    Bmt.planActivations(g, Map.of());
  };

  private static Map<String, ActivationMode> everyBlock(DistributedGpt g, ActivationMode mode) {
    Map<String, ActivationMode> modes = new java.util.LinkedHashMap<>();
    for (int i = 0; i < g.config().layers(); i++) {
      modes.put("layers." + i, mode);
    }
    return modes;
  }

  @Option(names = "--peak-tflops", description = "bf16 matmul peak for MFU (default ${DEFAULT-VALUE}, measured on these H100s)")
  double peakTflops = 790;

  @Option(names = "--trace-memory", description = "print memory after every step (leak hunting)")
  boolean traceMemory;

  public static void main(String[] args) {
    NativeLibraries.load(); // ranks may start together: see NativeLibraries
    System.exit(new CommandLine(new GptThroughput()).execute(args));
  }

  @Override
  public Integer call() {
    boolean gpu = workload.onGpu();
    workload.initDistributed();
    String device = gpu ? "cuda:" + Bmt.context().localRank() : "cpu";
    int world = Bmt.worldSize();
    GptConfig config = GptConfig.preset(workload.model, workload.vocab, workload.seq, 0.0, torch.ScalarType.BFloat16).on(device);
    long t0 = System.nanoTime();
    DistributedGpt gpt = new DistributedGpt(config, DistributedTransformerBlock::new);
    Bmt.printRank("GPT %s: %,d parameters, bf16, %d GPU(s), micro-batch %d x %d tokens per GPU, %s attention%s; built in %.1f s",
        workload.model, config.parameterCount(), world, workload.microBatch, workload.seq, TransformerBlock.attentionBackend(config, workload.microBatch, workload.seq),
        workload.separateReduceStream && gpu && world > 1 ? ", reductions on their own NCCL stream" : "", (System.nanoTime() - t0) / 1e9);
    double flopsPerToken = flopsPerToken(config, workload.seq);
    try (AdamOptimizer adam = new AdamOptimizer(Bmt.parameters(gpt),
        AdamOptions.builder().lr(1e-4).weightDecay(0.1).mixedPrecisionKernel(!libtorchAdam).build())) {
      OptimManager manager = new OptimManager(LossScale.none()).add(adam, null);
      Device dev = new Device(device);
      runSteps(gpt, manager, dev, warmup);
      Bmt.printRank("Adam: %s", adam.slicesOnMixedPrecisionKernel() > 0
          ? "bmtrain4j's mixed-precision kernel on " + adam.slicesOnMixedPrecisionKernel() + " parameter slices"
          : "libtorch's fused AdamW on fp32 gradient copies");
      java.util.Arrays.fill(phaseNanos, 0); // phases count the timed rounds (and their settling steps) only
      java.util.Arrays.fill(phasePeakBytes, 0);
      phaseSteps = 0;
      List<Variant> variants = new ArrayList<>(List.of(new Variant("prefetch", new BlockOptions(3, true, 2), ALL_RECOMPUTE)));
      if (prefetchOff && world > 1) { // a world of one never prefetches (nothing to overlap)
        variants.add(new Variant("no-prefetch", new BlockOptions(3, true, 1), ALL_RECOMPUTE));
      }
      if (fullRecompute) { // the same blocks recomputing their last matmul: what early stop saves
        variants.add(new Variant("no-early-stop", new BlockOptions(3, true, 2, false), ALL_RECOMPUTE));
      }
      if (activationRounds) { // what blocks keep for backward: attention only, everything, or as the budget fits
        variants.add(new Variant("selective", new BlockOptions(3, true, 2),
            g -> Bmt.planActivations(g, everyBlock(g, ActivationMode.SELECTIVE))));
        variants.add(new Variant("keep-all", new BlockOptions(3, true, 2),
            g -> Bmt.planActivations(g, everyBlock(g, ActivationMode.KEEP))));
        variants.add(new Variant("budget", new BlockOptions(3, true, 2),
            g -> Bmt.activationBudget(g, ActivationBudget.parse(budget))));
      }
      if (onlyVariants != null) {
        if (onlyVariants.contains("budget") && !onlyVariants.get(onlyVariants.size() - 1).equals("budget")) {
          throw new IllegalArgumentException("--variants: list budget last (its plan is read after the rounds)");
        }
        List<Variant> chosen = new ArrayList<>();
        for (String name : onlyVariants) {
          int k = indexOf(variants, name);
          if (k < 0) {
            throw new IllegalArgumentException("--variants: no variant " + name + " among "
                + variants.stream().map(Variant::name).toList() + " (--activation-rounds adds selective, keep-all and budget)");
          }
          chosen.add(variants.get(k));
        }
        variants.clear();
        variants.addAll(chosen);
      }
      double[][] seconds = new double[variants.size()][rounds];
      boolean measureWaits = collectiveWaits && world > 1;
      double[][] waitedMillis = new double[variants.size()][2]; // all-gathers, reduce-scatters; summed over timed steps
      DeviceMemory[] peak = new DeviceMemory[variants.size()];
      double loss = Double.NaN;
      for (int r = 0; r < rounds; r++) {
        for (int v = 0; v < variants.size(); v++) {
          Bmt.configureBlocks(gpt, variants.get(v).options());
          ALL_RECOMPUTE.accept(gpt);
          variants.get(v).plan().accept(gpt);
          countPhases = v == 0;
          runSteps(gpt, manager, dev, 1); // the first step after a switch settles the allocator (and measures, for the budget)
          DeviceMemory before = null;
          if (gpu) {
            DeviceMemory.resetPeak();
            windowPeakBytes = 0;
            before = DeviceMemory.current(); // the allocator's retries are counted over the timed steps
          }
          Bmt.synchronize();
          if (measureWaits) {
            Bmt.collectiveWaits().start();
          }
          long start = System.nanoTime();
          loss = runSteps(gpt, manager, dev, steps);
          seconds[v][r] = (System.nanoTime() - start) / 1e9 / steps;
          if (measureWaits) {
            CollectiveWaits.Report waits = Bmt.collectiveWaits().stop();
            waitedMillis[v][0] += waits.kind("all-gather").waitedMillis();
            waitedMillis[v][1] += waits.kind("reduce-scatter").waitedMillis();
          }
          peak[v] = gpu ? withPhasePeaks(DeviceMemory.current()).retriesSince(before) : new DeviceMemory(-1, 0, 0, 0, 0);
        }
      }
      double gatherSeconds = world > 1 ? allGatherSecondsPerStep(gpt) : 0;
      double best = 0;
      for (int v = 0; v < variants.size(); v++) {
        double s = min(seconds[v]);
        double tokensPerGpu = (double) workload.microBatch * workload.seq / s;
        double mfu = tokensPerGpu * flopsPerToken / (peakTflops * 1e12);
        Bmt.printRank("%-12s %8.1f ms/step  %,10.0f tokens/s/GPU  MFU %5.1f%%  %s", variants.get(v).name(), s * 1e3, tokensPerGpu,
            100 * mfu, peak[v]);
        if (v == 0) {
          best = s;
        }
      }
      ActivationPlan plan = Bmt.activationPlan(gpt); // the budget's, when the budget variant ran last in the round
      int budgetIndex = indexOf(variants, "budget");
      if (plan != null && budgetIndex == variants.size() - 1) {
        Bmt.printRank("budget: %s", plan.describe());
        double s = min(seconds[budgetIndex]);
        double tokensPerGpu = (double) workload.microBatch * workload.seq / s;
        Bmt.printRank("RESULT impl=bmtrain4j-budget model=%s gpus=%d tokens_per_s_per_gpu=%.0f mfu=%.4f peak_allocated_gib=%.2f"
            + " peak_reserved_gib=%.2f step_ms=%.1f loss=%.4f", workload.model, world, tokensPerGpu,
            tokensPerGpu * flopsPerToken / (peakTflops * 1e12), peak[budgetIndex].peakAllocatedBytes() / 1073741824.0,
            peak[budgetIndex].peakReservedBytes() / 1073741824.0, s * 1e3, loss);
      }
      int noPrefetchIndex = indexOf(variants, "no-prefetch");
      if (noPrefetchIndex > 0 && variants.get(0).name().equals("prefetch")) {
        double exposedWithout = min(seconds[noPrefetchIndex]) - best;
        Bmt.printRank("all-gathers alone: %.1f ms per step (2 per block: forward and recompute, plus the root);"
            + " prefetch saves %.1f ms, hiding %.0f%% of them", gatherSeconds * 1e3, exposedWithout * 1e3,
            100 * Math.max(0, Math.min(1, exposedWithout / gatherSeconds)));
      }
      if (measureWaits) {
        // What overlap left exposed, measured on the compute stream itself (CollectiveWaits).
        for (int v = 0; v < variants.size(); v++) {
          double ag = waitedMillis[v][0] / rounds / steps;
          Bmt.printRank("collective waits, %-13s compute waited %.2f ms per step on all-gathers (%.0f%% of them hidden),"
              + " %.2f ms on reduce-scatters", variants.get(v).name(), ag,
              100 * Math.max(0, 1 - ag / (gatherSeconds * 1e3)), waitedMillis[v][1] / rounds / steps);
        }
      }
      if (phases && phaseSteps > 0) {
        Bmt.printRank("phases (first variant, synchronised, mean of %d steps): forward + loss %.1f ms, backward + reduction %.1f ms,"
            + " optimizer %.1f ms; peak allocated in each: %.2f / %.2f / %.2f GiB", phaseSteps,
            phaseNanos[0] / 1e6 / phaseSteps, phaseNanos[1] / 1e6 / phaseSteps, phaseNanos[2] / 1e6 / phaseSteps,
            phasePeakBytes[0] / 1073741824.0, phasePeakBytes[1] / 1073741824.0, phasePeakBytes[2] / 1073741824.0);
      }
      double tokensPerGpu = workload.microBatch * workload.seq / best;
      Bmt.printRank("RESULT impl=bmtrain4j model=%s gpus=%d tokens_per_s_per_gpu=%.0f mfu=%.4f peak_allocated_gib=%.2f"
          + " peak_reserved_gib=%.2f step_ms=%.1f loss=%.4f", workload.model, world, tokensPerGpu,
          tokensPerGpu * flopsPerToken / (peakTflops * 1e12), peak[0].peakAllocatedBytes() / 1073741824.0,
          peak[0].peakReservedBytes() / 1073741824.0, best * 1e3, loss);
    }
    return 0;
  }

  /**
   * Training FLOPs per token, as PaLM's appendix counts them: 6 per parameter that multiplies
   * (the position table does not) plus 12·layers·d_model·seq for attention scores and values.
   */
  static double flopsPerToken(GptConfig c, int seq) {
    double n = c.parameterCount() - (double) c.maxSeq() * c.dModel();
    return 6 * n + 12.0 * c.layers() * c.dModel() * seq;
  }

  /** Runs {@code count} training steps on random tokens and returns the last loss (one host sync at the end). */
  private double runSteps(DistributedGpt gpt, OptimManager manager, Device dev, int count) {
    Tensor last = null;
    try (PointerScope scope = new PointerScope()) {
      TensorOptions longs = new TensorOptions().dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Long))
          .device(new DeviceOptional(dev));
      for (int i = 0; i < count; i++) {
        manager.zeroGrad();
        long t0 = phase();
        phasePeak(-1);
        long t1;
        // Forward and backward in a scope of their own, closed before the optimizer runs: a Java
        // handle keeps its tensor until closed, so the logits and the blocks' hidden states would
        // otherwise stay alive through the step (Python frees them as their last reference goes).
        try (PointerScope forwardBackward = new PointerScope()) {
          Tensor tokens = torch.randint(workload.vocab, new long[] {workload.microBatch, workload.seq + 1}, longs);
          Tensor logits16 = gpt.forward(tokens.narrow(1, 0, workload.seq));
          Tensor logits = logits16.to(torch.ScalarType.Float);
          logits16.close(); // 1.6 GiB at 1.3B, not needed past the cast (autograd keeps what it needs)
          Tensor loss = torch.cross_entropy_loss(logits.reshape(-1, workload.vocab), tokens.narrow(1, 1, workload.seq).reshape(-1));
          t1 = phase();
          phasePeak(0);
          manager.backward(loss);
          if (i == count - 1) {
            last = loss.detach();
            scope.attach(last);
          }
        }
        long t2 = phase();
        phasePeak(1);
        manager.step();
        long t3 = phase();
        phasePeak(2);
        if (phases && countPhases) {
          phaseNanos[0] += t1 - t0;
          phaseNanos[1] += t2 - t1;
          phaseNanos[2] += t3 - t2;
          phaseSteps++;
        }
        if (traceMemory) {
          Bmt.printRank("step done: %s; JVM-tracked native %d MiB, RSS %d MiB",
              dev.is_cuda() ? DeviceMemory.current().toString() : "cpu", org.bytedeco.javacpp.Pointer.totalBytes() >> 20,
              org.bytedeco.javacpp.Pointer.physicalBytes() >> 20);
        }
      }
      return last == null ? Double.NaN : last.item().toDouble();
    }
  }

  /**
   * The all-gathers of one step issued back to back with nothing to hide behind: every block
   * twice (forward, and again for recompute in backward) and the root's own parameters once.
   */
  private double allGatherSecondsPerStep(DistributedGpt gpt) {
    List<ParameterGroup> blocks = new ArrayList<>();
    ParameterGroup root = null;
    ShardedModuleRuntime top = Bmt.runtimeOf(gpt);
    for (ShardedModuleRuntime r : top.tree()) {
      if (r.group() == null) {
        continue;
      }
      if (r == top) {
        root = r.group();
      } else {
        blocks.add(r.group());
      }
    }
    double best = Double.MAX_VALUE;
    for (int rep = 0; rep < 3; rep++) {
      long start = workload.synchronizedNanos();
      for (int pass = 0; pass < 2; pass++) {
        for (ParameterGroup g : blocks) {
          g.gather();
          g.release();
        }
      }
      if (root != null) {
        root.gather();
        root.release();
      }
      best = Math.min(best, (workload.synchronizedNanos() - start) / 1e9);
    }
    return best;
  }

  @Option(names = "--collective-waits", description = "with 2+ GPUs: time how long compute waited on all-gathers and"
      + " reduce-scatters in the timed steps (timing events around each wait)")
  boolean collectiveWaits;

  @Option(names = "--phases", description = "time forward, backward and optimizer separately (a device sync after each: slower)")
  boolean phases;

  private final long[] phaseNanos = new long[3];
  private final long[] phasePeakBytes = new long[3]; // with --phases on a GPU: the allocator's peak in each phase
  private long windowPeakBytes; // the same, since the current round's peak window began
  private int phaseSteps;
  private boolean countPhases = true; // the phase times describe the first variant (prefetch, early stop) only

  /** With --phases: waits for the device and returns the time; otherwise returns 0 at once. */
  private long phase() {
    return phases ? workload.synchronizedNanos() : 0;
  }

  /** The round's peak: with --phases the allocator's window restarts each phase, so the round's phase peaks count too. */
  private DeviceMemory withPhasePeaks(DeviceMemory d) {
    return new DeviceMemory(d.device(), d.allocatedBytes(), Math.max(d.peakAllocatedBytes(), windowPeakBytes),
        d.reservedBytes(), d.peakReservedBytes(), d.allocRetries());
  }

  /** With --phases on a GPU: folds the allocator's peak since the last call into phase {@code i}'s, and starts a new window. */
  private void phasePeak(int i) {
    if (phases && workload.onGpu()) {
      if (i >= 0) {
        long peak = DeviceMemory.current().peakAllocatedBytes();
        if (countPhases) {
          phasePeakBytes[i] = Math.max(phasePeakBytes[i], peak);
        }
        windowPeakBytes = Math.max(windowPeakBytes, peak);
      }
      DeviceMemory.resetPeak();
    }
  }

  private static int indexOf(List<Variant> variants, String name) {
    for (int v = 0; v < variants.size(); v++) {
      if (variants.get(v).name().equals(name)) {
        return v;
      }
    }
    return -1;
  }

  private static double min(double[] xs) {
    double m = Double.MAX_VALUE;
    for (double x : xs) {
      m = Math.min(m, x);
    }
    return m;
  }
}
