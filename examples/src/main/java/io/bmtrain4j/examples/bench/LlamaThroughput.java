package io.bmtrain4j.examples.bench;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.DeviceMemory;
import io.bmtrain4j.examples.llama.DistributedLlama;
import io.bmtrain4j.examples.llama.DistributedLlamaBlock;
import io.bmtrain4j.examples.llama.LlamaConfig;
import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.nn.ChunkedCrossEntropy;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LossScale;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.store.ShardedCheckpoint;
import io.bmtrain4j.zero.ActivationBudget;
import java.nio.file.Path;
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
 * GPU training throughput of the LLaMA example (ZeRO-3, recompute with early stop, bf16
 * parameters, fp32 Adam masters), for the side-by-side comparison with PyTorch FSDP2 on
 * {@code transformers}' {@code LlamaForCausalLM} in {@code bench/fsdp2_llama.py}. Also reports
 * the build time (construction and {@code Bmt.initParameters}, drawn per rank slice on the GPU),
 * the peak memory of the chunked head and loss against the whole logits, and with
 * {@code --save-dir} how long a sharded checkpoint blocks training, written inline or in the
 * background. The {@code RESULT} line is what {@code bench/gpu-llama.sh} collects.
 */
@Command(name = "llama-throughput", mixinStandardHelpOptions = true, description = "LLaMA training throughput on GPUs.")
public final class LlamaThroughput implements Callable<Integer> {
  @Option(names = "--model", description = "LLaMA preset (default ${DEFAULT-VALUE})")
  String model = "llama3.2-1b";

  @Option(names = "--layers", description = "override the preset's number of layers (0: keep it)")
  int layers;

  @Option(names = "--seq", description = "sequence length (default ${DEFAULT-VALUE})")
  int seq = 2048;

  @Option(names = "--micro-batch", description = "sequences per GPU per step (default ${DEFAULT-VALUE})")
  int microBatch = 4;

  @Option(names = "--steps", description = "timed steps per round (default ${DEFAULT-VALUE})")
  int steps = 10;

  @Option(names = "--warmup", description = "untimed steps first (default ${DEFAULT-VALUE})")
  int warmup = 3;

  @Option(names = "--rounds", description = "timed rounds; the best counts (default ${DEFAULT-VALUE})")
  int rounds = 2;

  @Option(names = "--full-logits", description = "also time the loss on the whole fp32 logits (to compare peak memory)")
  boolean fullLogits;

  @Option(names = "--save-dir", description = "also time a sharded checkpoint: blocking save against saveAsync")
  Path saveDir;

  @Option(names = "--budget-rounds", description = "also time the chunked loss (and with --full-logits the whole logits) with the activation budget choosing what blocks keep")
  boolean budgetRounds;

  @Option(names = "--activation-budget", description = "the budget of the budget rounds (default ${DEFAULT-VALUE})")
  String budget = "90%";

  @Option(names = "--peak-tflops", description = "bf16 matmul peak for MFU (default ${DEFAULT-VALUE})")
  double peakTflops = 790;

  @Mixin BenchDevice bench = new BenchDevice();

  public static void main(String[] args) {
    NativeLibraries.load();
    System.exit(new CommandLine(new LlamaThroughput()).execute(args));
  }

  @Override
  public Integer call() throws Exception {
    bench.initDistributed();
    String device = bench.onGpu() ? "cuda:" + Bmt.context().localRank() : "cpu";
    LlamaConfig preset = LlamaConfig.preset(model, 256, seq, bench.onGpu() ? torch.ScalarType.BFloat16 : torch.ScalarType.Float, device);
    LlamaConfig c = layers <= 0 ? preset : preset.withLayers(layers);
    long t0 = bench.synchronizedNanos();
    DistributedLlama llama = new DistributedLlama(c, DistributedLlamaBlock::new);
    Bmt.initParameters(llama);
    double buildSeconds = (bench.synchronizedNanos() - t0) / 1e9;
    Bmt.printRank("LLaMA %s%s: %,d parameters, bf16, %d GPU(s), micro-batch %d x %d tokens per GPU; built in %.1f s",
        model, layers > 0 ? " (" + layers + " layers)" : "", c.parameterCount(), Bmt.worldSize(), microBatch, seq, buildSeconds);
    double flopsPerToken = 6.0 * (c.parameterCount() - (double) c.vocab() * c.dModel()) // the embedding lookup multiplies nothing
        + 12.0 * c.layers() * c.dModel() * seq;
    Device dev = new Device(device);
    try (AdamOptimizer adam = new AdamOptimizer(Bmt.parameters(llama), AdamOptions.builder().lr(1e-4).weightDecay(0.1).build())) {
      OptimManager manager = new OptimManager(LossScale.none()).add(adam, null);
      runSteps(llama, manager, dev, warmup, false, c.vocab());
      List<String> names = new ArrayList<>(List.of("chunked-loss"));
      if (fullLogits) {
        names.add("full-logits");
      }
      if (budgetRounds) {
        names.add("budget"); // the chunked loss, blocks keeping what the activation budget fits
        if (fullLogits) {
          names.add("budget-logits"); // the same with the whole logits
        }
      }
      double[] best = new double[names.size()];
      java.util.Arrays.fill(best, Double.MAX_VALUE);
      DeviceMemory[] peak = new DeviceMemory[names.size()];
      double loss = Double.NaN;
      for (int r = 0; r < rounds; r++) {
        for (int v = 0; v < names.size(); v++) {
          boolean whole = names.get(v).equals("full-logits") || names.get(v).equals("budget-logits");
          Bmt.activationBudget(llama, names.get(v).startsWith("budget") ? ActivationBudget.parse(budget) : null);
          runSteps(llama, manager, dev, 1, whole, c.vocab()); // settles the allocator (and measures, for the budget)
          DeviceMemory before = null;
          if (bench.onGpu()) {
            DeviceMemory.resetPeak();
            before = DeviceMemory.current(); // the allocator's retries are counted over the timed steps
          }
          Bmt.synchronize();
          long start = bench.synchronizedNanos();
          loss = runSteps(llama, manager, dev, steps, whole, c.vocab());
          best[v] = Math.min(best[v], (bench.synchronizedNanos() - start) / 1e9 / steps);
          peak[v] = bench.onGpu() ? DeviceMemory.current().retriesSince(before) : new DeviceMemory(-1, 0, 0, 0, 0);
        }
      }
      for (int v = 0; v < names.size(); v++) {
        double tokens = (double) microBatch * seq / best[v];
        Bmt.printRank("%-12s %8.1f ms/step  %,10.0f tokens/s/GPU  MFU %5.1f%%  %s", names.get(v), best[v] * 1e3, tokens,
            100 * tokens * flopsPerToken / (peakTflops * 1e12), peak[v]);
      }
      if (budgetRounds && Bmt.activationPlan(llama) != null) {
        Bmt.printRank("budget: %s", Bmt.activationPlan(llama).describe());
      }
      if (saveDir != null) {
        timeSaves(llama, manager, dev, c.vocab());
      }
      double tokens = (double) microBatch * seq / best[0];
      Bmt.printRank("RESULT impl=bmtrain4j model=%s gpus=%d tokens_per_s_per_gpu=%.0f mfu=%.4f peak_allocated_gib=%.2f"
          + " peak_reserved_gib=%.2f step_ms=%.1f build_s=%.1f loss=%.4f", model, Bmt.worldSize(), tokens,
          tokens * flopsPerToken / (peakTflops * 1e12), peak[0].peakAllocatedBytes() / 1073741824.0,
          peak[0].peakReservedBytes() / 1073741824.0, best[0] * 1e3, buildSeconds, loss);
    }
    return 0;
  }

  /** How long training waits for a blocking save, and for a background one (whose write then overlaps the next steps). */
  private void timeSaves(DistributedLlama llama, OptimManager manager, Device dev, int vocab) {
    long start = bench.synchronizedNanos();
    ShardedCheckpoint.save(saveDir, llama, manager, 1, 1);
    double blocking = (bench.synchronizedNanos() - start) / 1e9;
    start = bench.synchronizedNanos();
    ShardedCheckpoint.PendingSave pending = ShardedCheckpoint.saveAsync(saveDir, llama, manager, 2, 1);
    double handedOff = (bench.synchronizedNanos() - start) / 1e9;
    long trainStart = bench.synchronizedNanos();
    runSteps(llama, manager, dev, 3, false, vocab);
    double threeSteps = (bench.synchronizedNanos() - trainStart) / 1e9;
    long waitStart = System.nanoTime();
    pending.await();
    double waited = (System.nanoTime() - waitStart) / 1e9;
    Bmt.printRank("checkpoint: blocking save %.2f s; saveAsync blocked training %.2f s (host copies), then 3 steps took %.2f s"
        + " while it was written, and %.2f s more were waited for at the end", blocking, handedOff, threeSteps, waited);
    start = bench.synchronizedNanos();
    ShardedCheckpoint.saveAsync(saveDir, llama, manager, 3, 1);
    double again = (bench.synchronizedNanos() - start) / 1e9;
    ShardedCheckpoint.awaitPendingSave();
    Bmt.printRank("checkpoint: a second saveAsync, into the host buffers the first one made, blocked training %.2f s", again);
  }

  /** {@code count} steps on random tokens; the last loss. */
  private double runSteps(DistributedLlama llama, OptimManager manager, Device dev, int count, boolean wholeLogits, int vocab) {
    Tensor last = null;
    try (PointerScope scope = new PointerScope()) {
      TensorOptions longs = new TensorOptions().dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Long))
          .device(new DeviceOptional(dev));
      for (int i = 0; i < count; i++) {
        manager.zeroGrad();
        try (PointerScope step = new PointerScope()) {
          Tensor tokens = torch.randint(vocab, new long[] {microBatch, seq + 1}, longs);
          // The model's own loss: in chunks, or (0) on the whole logits, as --loss-chunk chooses in Train.
          llama.setLossChunkTokens(wholeLogits ? 0 : ChunkedCrossEntropy.Options.defaults(vocab).chunkRows());
          Tensor loss = llama.loss(tokens.narrow(1, 0, seq), tokens.narrow(1, 1, seq));
          manager.backward(loss);
          if (i == count - 1) {
            last = loss.detach();
            scope.attach(last);
          }
        }
        manager.step();
      }
      return last == null ? Double.NaN : last.item().toDouble();
    }
  }
}
