package io.bmtrain4j.examples;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.examples.data.RepeatedPatternTask;
import io.bmtrain4j.examples.data.TokenSource;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.examples.train.LossPlot;
import io.bmtrain4j.examples.train.Sampler;
import io.bmtrain4j.examples.train.TrainingProgress;
import io.bmtrain4j.checkpoint.ShardedCheckpoint;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LossScale;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.optim.lr.LrSchedulers;
import io.bmtrain4j.natives.NativeLibraries;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Trains the example GPT with ZeRO-3 sharding. One process by default; under torchrun, Slurm or
 * {@code --nproc N} (the local launcher) each process is one rank. Rank 0 shows a progress bar,
 * writes the loss curve and a checkpoint, and prints a sample from the trained model.
 */
@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
    description = "Train the example GPT with bmtrain4j (ZeRO-3 sharded data parallelism).")
public final class Train implements Callable<Integer> {
  @Option(names = "--nproc", description = "start this many ranks on this machine (local launcher); default ${DEFAULT-VALUE}: run as the launcher's environment says")
  int nproc = 0;

  @Option(names = "--model", description = "preset: ${COMPLETION-CANDIDATES} (default ${DEFAULT-VALUE})", completionCandidates = Presets.class)
  String model = "tiny";

  @Option(names = "--dtype", description = "parameter dtype: fp32, bf16 or fp16 (masters stay fp32; fp16 uses a dynamic loss scale) (default ${DEFAULT-VALUE})")
  String dtype = "fp32";

  @Option(names = "--data", description = "synthetic, text:PATH (bytes) or bin:PATH (nanoGPT uint16 tokens) (default ${DEFAULT-VALUE})")
  String data = "synthetic";

  @Option(names = "--vocab", description = "vocabulary of a bin: data file (default ${DEFAULT-VALUE})")
  int vocab = 50304;

  @Option(names = "--seq", description = "sequence length (default ${DEFAULT-VALUE})")
  int seq = 32;

  @Option(names = "--micro-batch", description = "sequences per rank per micro-batch (default ${DEFAULT-VALUE})")
  int microBatch = 8;

  @Option(names = "--grad-accum", description = "micro-batches per optimizer step (default ${DEFAULT-VALUE})")
  int gradAccum = 1;

  @Option(names = "--steps", description = "optimizer steps (default ${DEFAULT-VALUE})")
  int steps = 150;

  @Option(names = "--lr", description = "peak learning rate (default ${DEFAULT-VALUE})")
  double lr = 3e-3;

  @Option(names = "--lr-schedule", description = "${COMPLETION-CANDIDATES} (default ${DEFAULT-VALUE})", completionCandidates = Schedules.class)
  String schedule = "noDecay";

  @Option(names = "--warmup", description = "warmup steps (default ${DEFAULT-VALUE})")
  int warmup = 10;

  @Option(names = "--weight-decay", description = "decoupled weight decay (default ${DEFAULT-VALUE})")
  double weightDecay = 0.0;

  @Option(names = "--clip", description = "clip gradients to this global norm (default ${DEFAULT-VALUE})")
  double clip = 1.0;

  @Option(names = "--dropout", description = "dropout probability (default ${DEFAULT-VALUE})")
  double dropout = 0.0;

  @Option(names = "--checkpoint-dir", description = "where checkpoints and the loss plot go (default ${DEFAULT-VALUE})")
  Path checkpointDir = Path.of("checkpoints");

  @Option(names = "--checkpoint-every", description = "also save every N steps; 0: only at the end (default ${DEFAULT-VALUE})")
  int checkpointEvery = 0;

  @Option(names = "--resume", description = "continue from the checkpoint in --checkpoint-dir (saved at any number of ranks)")
  boolean resume;

  @Option(names = "--device", description = "cpu (Gloo), or cuda: one GPU per rank (LOCAL_RANK), NCCL (default ${DEFAULT-VALUE})")
  String device = "cpu";

  @Option(names = "--threads", description = "libtorch threads per rank (default: cores per rank - 1, at least 1)")
  int threads = 0;

  @Option(names = "--seed", description = "seed shared by every rank (default ${DEFAULT-VALUE})")
  long seed = 0;

  /** Preset names for --help. */
  public static final class Presets extends ArrayList<String> {
    private static final long serialVersionUID = 1L;

    public Presets() {
      super(GptConfig.PRESETS);
    }
  }

  /** Schedule names for --help. */
  static final class Schedules extends ArrayList<String> {
    private static final long serialVersionUID = 1L;

    Schedules() {
      super(LrSchedulers.NAMES);
    }
  }

  /** The command line as given, for the local launcher to pass on to each rank. */
  private static String[] commandLine = new String[0];

  public static void main(String[] args) {
    commandLine = args.clone();
    System.exit(new CommandLine(new Train()).execute(args));
  }

  private static torch.ScalarType scalarType(String name) {
    switch (name) {
      case "fp32":
        return torch.ScalarType.Float;
      case "bf16":
        return torch.ScalarType.BFloat16;
      case "fp16":
        return torch.ScalarType.Half;
      default:
        throw new CommandLine.ParameterException(new CommandLine(new Train()), "--dtype must be fp32, bf16 or fp16, got " + name);
    }
  }

  @Override
  public Integer call() throws Exception {
    // Before any libtorch class initialises; the launcher (--nproc) unpacks once for its ranks.
    NativeLibraries.load();
    if (nproc > 0) {
      return Launch.ranks(nproc, Train.class, Launch.without(commandLine, "--nproc"));
    }
    boolean gpu = device.startsWith("cuda");
    Bmt.initDistributed(InitOptions.builder().seed(seed).backend(gpu ? "nccl" : "gloo").build());
    if (gpu && device.equals("cuda")) {
      device = "cuda:" + Bmt.context().localRank(); // one GPU per rank
    }
    torch.set_num_threads(threads > 0 ? threads : Threads.perRank());
    TokenSource source = TokenSource.open(data, seq, seed, vocab);
    torch.ScalarType type = scalarType(dtype);
    GptConfig config = GptConfig.preset(model, source.vocab(), seq, dropout, type).on(device);
    org.bytedeco.pytorch.Device dev = new org.bytedeco.pytorch.Device(device);
    DistributedGpt gpt = new DistributedGpt(config, DistributedTransformerBlock::new);
    Bmt.printRank("GPT %s: %,d parameters, %s, %d rank(s); %s", model, config.parameterCount(), dtype, Bmt.worldSize(),
        Bmt.memoryReport(gpt));

    try (AdamOptimizer adam = new AdamOptimizer(Bmt.parameters(gpt),
        AdamOptions.builder().lr(lr).weightDecay(weightDecay).build())) {
      OptimManager manager = new OptimManager(type == torch.ScalarType.Half ? LossScale.dynamic(1024) : LossScale.none())
          .add(adam, LrSchedulers.create(schedule, adam, lr, warmup, steps, 0.99));
      int first = 0;
      if (resume) {
        first = (int) ShardedCheckpoint.load(checkpointDir, gpt, manager);
        Bmt.printRank("resumed from %s at step %d", checkpointDir, first);
      }
      List<Double> losses = new ArrayList<>();
      long tokensPerStep = (long) Bmt.worldSize() * microBatch * gradAccum * seq;
      try (TrainingProgress progress = progress(first)) {
        for (int step = first; step < steps; step++) {
          long t0 = System.nanoTime();
          double loss = 0;
          try (PointerScope scope = new PointerScope()) {
            manager.zeroGrad();
            for (int m = 0; m < gradAccum; m++) {
              // Each micro-batch's logits and hidden states die with its own scope, before the
              // next micro-batch and the optimizer need the memory.
              try (PointerScope microBatchScope = new PointerScope()) {
                Tensor[] b = source.batch(step * gradAccum + m, Bmt.rank(), microBatch);
                Tensor logits = gpt.forward(b[0].to(dev, torch.ScalarType.Long)).to(torch.ScalarType.Float);
                Tensor l = torch.cross_entropy_loss(logits.reshape(-1, source.vocab()),
                    b[1].to(dev, torch.ScalarType.Long).reshape(-1));
                manager.backward(l.div(new Scalar((double) gradAccum)));
                loss += Bmt.sumLoss(l) / gradAccum;
              }
            }
            manager.clipGradNorm(clip);
            manager.step();
          }
          losses.add(loss);
          double seconds = (System.nanoTime() - t0) / 1e9;
          progress.update(step + 1, String.format("loss %.4f | %,.0f tok/s | lr %.1e | scale %.0f",
              loss, tokensPerStep / seconds, adam.learningRate(), manager.lossScale()));
          if (checkpointEvery > 0 && (step + 1) % checkpointEvery == 0 && step + 1 < steps) {
            ShardedCheckpoint.save(checkpointDir, gpt, manager, step + 1);
          }
        }
      }
      ShardedCheckpoint.save(checkpointDir, gpt, manager, steps);
      if (!losses.isEmpty()) {
        Bmt.printRank("loss %.4f -> %.4f over steps %d..%d", losses.get(0), losses.get(losses.size() - 1), first, steps - 1);
        if (Bmt.rank() == 0) {
          Path png = checkpointDir.resolve("loss.png");
          try {
            LossPlot.write(png, first, losses, "bmtrain4j: GPT " + model + " on " + data + ", " + Bmt.worldSize() + " rank(s)");
            System.out.println("wrote " + png + " and the sharded checkpoint " + checkpointDir + "/latest");
          } catch (java.io.IOException | LinkageError e) {
            // A JRE without font libraries (a jlink'd runtime, say) cannot draw: the run itself is fine.
            System.out.println("wrote the sharded checkpoint " + checkpointDir + "/latest; no loss plot: " + e);
          }
        }
      }
      printSample(gpt, source, config);
    }
    return 0;
  }

  private TrainingProgress progress(int first) {
    return Bmt.rank() == 0 ? TrainingProgress.create("train", first, steps, System.out) : TrainingProgress.none();
  }

  /** A prompt, and what the model makes of it (greedy). Every rank runs it; rank 0 prints. */
  private void printSample(DistributedGpt gpt, TokenSource source, GptConfig config) {
    Tensor[] b = source.batch(1_000_000, 0, 1);
    long[] all = toLongs(b[0]);
    int promptLength = source instanceof RepeatedPatternTask ? ((RepeatedPatternTask) source).period() + 2 : Math.min(16, seq / 2);
    long[] prompt = java.util.Arrays.copyOf(all, promptLength);
    int count = Math.min(seq - promptLength, 24);
    long[] out = Sampler.greedy(gpt, prompt, count, config.maxSeq(), config.device());
    long[] continuation = java.util.Arrays.copyOfRange(out, promptLength, out.length);
    long[] expected = java.util.Arrays.copyOfRange(all, promptLength, promptLength + count);
    int right = 0;
    for (int i = 0; i < count; i++) {
      right += continuation[i] == expected[i] ? 1 : 0;
    }
    Bmt.printRank("sample: prompt   %s%n        model    %s%n        data     %s  (%d/%d tokens as in the data)",
        source.decode(prompt), source.decode(continuation), source.decode(expected), right, count);
  }

  private static long[] toLongs(Tensor t) {
    Tensor c = t.contiguous().view(-1);
    long[] out = new long[(int) c.numel()];
    new org.bytedeco.javacpp.LongPointer(c.data_ptr()).get(out);
    return out;
  }
}
