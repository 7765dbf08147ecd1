package io.bmtrain4j.examples;

import io.bmtrain4j.dist.Backend;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.zero.ActivationBudget;
import io.bmtrain4j.zero.ActivationPlan;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.dist.DistEnvironment;
import io.bmtrain4j.examples.data.MappedTokens;
import io.bmtrain4j.examples.data.Prepare;
import io.bmtrain4j.examples.data.RepeatedPatternTask;
import io.bmtrain4j.examples.data.TextTokenizer;
import io.bmtrain4j.examples.data.TokenSource;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.examples.llama.DistributedLlama;
import io.bmtrain4j.examples.llama.DistributedLlamaBlock;
import io.bmtrain4j.examples.llama.HuggingFaceLlama;
import io.bmtrain4j.examples.llama.LlamaConfig;
import io.bmtrain4j.examples.train.LanguageModel;
import io.bmtrain4j.examples.train.LossPlot;
import io.bmtrain4j.examples.train.Sampler;
import io.bmtrain4j.examples.train.TrainingProgress;
import io.bmtrain4j.store.ShardedCheckpoint;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LossScale;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.optim.lr.LrSchedulers;
import io.bmtrain4j.natives.NativeLibraries;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
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
@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false, subcommands = Prepare.class,
    description = "Train the example GPT with bmtrain4j (ZeRO-3 sharded data parallelism).")
public final class Train implements Callable<Integer> {
  @CommandLine.Spec
  CommandLine.Model.CommandSpec spec;

  @Option(names = "--nproc", description = "start this many ranks on this machine (local launcher); default ${DEFAULT-VALUE}: run as the launcher's environment says")
  int nproc = 0;

  @Option(names = "--arch", description = "model family: gpt or llama (default ${DEFAULT-VALUE})")
  String arch = "gpt";

  @Option(names = "--model", description = "preset: ${COMPLETION-CANDIDATES} (default ${DEFAULT-VALUE})", completionCandidates = Presets.class)
  String model = "tiny";

  @Option(names = "--hf-model", description = "fine-tune this Hugging Face model directory (config.json and safetensors weights; --arch llama): its shape replaces --model")
  Path hfModel;

  @Option(names = "--save-hf", description = "at the end, also save the model as a Hugging Face directory here (--arch llama), with the tokenizer files of --hf-model")
  Path saveHf;

  @Option(names = "--loss-chunk", description = "--arch llama: tokens whose logits the loss computes at once; 0: the whole logits, faster when memory allows (default: about 1 GiB of fp32 logits)")
  long lossChunk = -1;

  @Option(names = "--tokenizer", description = "tokenizer.json (or a model directory holding one) to show samples as text; default: that of --hf-model, if any")
  Path tokenizer;

  @Option(names = "--dtype", description = "parameter dtype: fp32, bf16 or fp16 (masters stay fp32; fp16 uses a dynamic loss scale) (default ${DEFAULT-VALUE})")
  String dtype = "fp32";

  @Option(names = "--data", description = "synthetic, text:PATH (bytes), bin:PATH (nanoGPT uint16 tokens) or tokens:PATH (written by the prepare subcommand) (default ${DEFAULT-VALUE})")
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

  @Option(names = "--warmup", description = "warmup steps, fewer than --steps (default ${DEFAULT-VALUE}, or --steps - 1 if that is less)")
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

  @Option(names = "--async-checkpoints", description = "write the --checkpoint-every saves in the background while training goes on (the next save, and the end, wait for them)")
  boolean asyncCheckpoints;

  @Option(names = "--resume", description = "continue from the checkpoint in --checkpoint-dir (saved at any number of ranks)")
  boolean resume;

  @Option(names = "--device", description = "cpu (Gloo), or cuda: one GPU per rank (LOCAL_RANK), NCCL (default ${DEFAULT-VALUE})")
  String device = "cpu";

  @Option(names = "--activation-budget", description = "peak memory per rank that kept activations may fill: the first"
      + " step measures every block, then the graphs of as many blocks (or of their attention) as fit are kept instead of"
      + " recomputed. auto: 90%% of the GPU with --device cuda, off on the CPU; off: every block recomputes; or a share (80%%) or size (60GiB) (default ${DEFAULT-VALUE})")
  String activationBudget = "auto";

  @Option(names = "--threads", description = "libtorch threads per rank (default: cores per rank - 1, at least 1)")
  int threads = 0;

  @Option(names = "--seed", description = "seed shared by every rank (default ${DEFAULT-VALUE})")
  long seed = 0;

  @Option(names = "--timeout", description = "seconds any wait for other ranks may take (rendezvous, collectives) before the run fails (default ${DEFAULT-VALUE})")
  int timeoutSeconds = 300;

  @Option(names = "--on-nonfinite", description = "when the loss or the gradient norm is NaN or infinite: stop (no checkpoint), skip the step, or continue (default ${DEFAULT-VALUE}); a dynamic loss scale (fp16) handles overflow itself")
  NonFinite onNonFinite = NonFinite.stop;

  @Option(names = "--keep-last", description = "keep only the newest N checkpoints; 0 keeps all (default ${DEFAULT-VALUE})")
  int keepLast = 0;

  @Option(names = "--debug", description = "print stack traces of errors too")
  boolean debug;

  /** What a non-finite loss or gradient norm does to the run. */
  enum NonFinite { stop, skip, go }

  /** Preset names for --help. */
  public static final class Presets extends ArrayList<String> {
    private static final long serialVersionUID = 1L;

    public Presets() {
      super(concat(GptConfig.PRESETS, LlamaConfig.PRESETS));
    }

    private static List<String> concat(List<String> a, List<String> b) {
      List<String> out = new ArrayList<>(a);
      b.stream().filter(n -> !out.contains(n)).forEach(out::add);
      return out;
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
    System.exit(commandLine(new Train()).execute(args));
  }

  /** picocli with the project's error handling: see {@link UserErrors}. */
  static CommandLine commandLine(Train train) {
    CommandLine cl = new CommandLine(train);
    cl.registerConverter(NonFinite.class, v -> {
      switch (v) {
        case "stop": return NonFinite.stop;
        case "skip": return NonFinite.skip;
        case "continue": return NonFinite.go;
        default: throw new CommandLine.TypeConversionException("expected stop, skip or continue, got '" + v + "'");
      }
    });
    return UserErrors.install(cl, () -> train.debug);
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
    validate();
    // Before any libtorch class initialises; the launcher (--nproc) unpacks once for its ranks.
    NativeLibraries.load();
    if (nproc > 0) {
      return Launch.ranks(nproc, Train.class, Launch.without(commandLine, "--nproc"));
    }
    boolean gpu = device.startsWith("cuda");
    if (gpu) {
      // Before the rendezvous: NCCL takes the rank's GPU as soon as it joins.
      Devices.requireCuda(device);
      if (device.equals("cuda")) {
        int localRank = DistEnvironment.fromEnvironment(System.getenv()).localRank();
        Devices.requireIndex("cuda:" + localRank, "--device cuda with LOCAL_RANK=" + localRank);
      } else {
        Devices.requireIndex(device, "--device " + device);
      }
    }
    Bmt.initDistributed(InitOptions.builder().seed(seed).backend(gpu ? Backend.NCCL : Backend.GLOO)
        .timeout(java.time.Duration.ofSeconds(timeoutSeconds)).build());
    if (gpu && device.equals("cuda")) {
      device = "cuda:" + Bmt.context().localRank(); // one GPU per rank
    }
    torch.set_num_threads(threads > 0 ? threads : Threads.perRank());
    TokenSource source = TokenSource.open(data, seq, seed, vocab);
    torch.ScalarType type = scalarType(dtype);
    org.bytedeco.pytorch.Device dev = new org.bytedeco.pytorch.Device(device);
    Built built = arch.equals("gpt") ? buildGpt(source, type) : buildLlama(source, type);
    Bmt.printRank("%s: %,d parameters, %s, %d rank(s); %s", built.description(), built.parameters(), dtype, Bmt.worldSize(),
        Bmt.memoryReport(built.model()));

    LanguageModel lm = built.model();
    ActivationBudget budget = activationBudget(gpu);
    if (budget != null) {
      Bmt.activationBudget(lm, budget);
    }
    ActivationPlan shownPlan = null;
    try (AdamOptimizer adam = new AdamOptimizer(Bmt.parameters(lm),
        AdamOptions.builder().lr(lr).weightDecay(weightDecay).build())) {
      OptimManager manager = new OptimManager(type == torch.ScalarType.Half ? LossScale.dynamic(1024) : LossScale.none())
          .add(adam, LrSchedulers.create(schedule, adam, lr, warmup, steps, 0.99));
      int first = 0;
      if (resume) {
        long saved = ShardedCheckpoint.step(checkpointDir);
        if (saved >= steps) {
          throw new UserErrors.UserException("--steps " + steps + " is not beyond the checkpoint's step " + saved
              + " in " + checkpointDir + ": give --steps greater than " + saved + " to continue training");
        }
        first = (int) ShardedCheckpoint.load(checkpointDir, lm, manager);
        Bmt.printRank("resumed from %s at step %d", checkpointDir, first);
      }
      List<Double> losses = new ArrayList<>();
      int divergedAt = -1; // the step whose loss was not finite, under --on-nonfinite continue
      long tokensPerStep = (long) Bmt.worldSize() * microBatch * gradAccum * seq;
      try {
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
                  Tensor l = lm.loss(b[0].to(dev, torch.ScalarType.Long), b[1].to(dev, torch.ScalarType.Long));
                  manager.backward(l.div(new Scalar((double) gradAccum)));
                  loss += Bmt.meanLoss(l) / gradAccum;
                }
              }
              double norm = manager.clipGradNorm(clip);
              if (!manager.lossScaleEnabled() && !(Double.isFinite(loss) && Double.isFinite(norm))) {
                // Every rank sees the same averaged loss and global norm, so all take the same branch.
                String what = String.format("step %d: the loss is %s and the gradient norm %s", step + 1, loss, norm);
                if (onNonFinite == NonFinite.stop) {
                  throw new UserErrors.UserException(what + "; stopping without a checkpoint (" + lastGoodCheckpoint()
                      + "). Lower --lr, or pass --on-nonfinite skip to drop such steps.");
                }
                if (onNonFinite == NonFinite.skip) {
                  Bmt.printRank("%s; step skipped (--on-nonfinite skip)", what);
                  manager.zeroGrad();
                  continue;
                }
                if (divergedAt < 0) {
                  Bmt.printRank("%s; continuing (--on-nonfinite continue), and no longer saving checkpoints", what);
                  divergedAt = step + 1;
                }
              }
              manager.step();
            }
            losses.add(loss);
            ActivationPlan plan = Bmt.activationPlan(lm);
            if (plan != null && plan != shownPlan) {
              Bmt.printRank("%s", plan.describe()); // after the measured step, and again when the shapes change
              shownPlan = plan;
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            progress.update(step + 1, String.format("loss %.4f | %,.0f tok/s | lr %.1e | scale %.0f",
                loss, tokensPerStep / seconds, adam.learningRate(), manager.lossScale()));
            if (checkpointEvery > 0 && (step + 1) % checkpointEvery == 0 && step + 1 < steps && divergedAt < 0) {
              if (asyncCheckpoints) {
                ShardedCheckpoint.saveAsync(checkpointDir, lm, manager, step + 1, keepLast);
              } else {
                ShardedCheckpoint.save(checkpointDir, lm, manager, step + 1, keepLast);
              }
            }
          }
        }
      } finally {
        // Whatever ends the loop (a divergence, an error), a background save still being written
        // completes before the process exits: it may be the last good checkpoint.
        finishBackgroundSave();
      }
      if (divergedAt < 0) {
        ShardedCheckpoint.save(checkpointDir, lm, manager, steps, keepLast);
        if (saveHf != null) {
          saveHuggingFace(built);
        }
      } else {
        Bmt.printRank("checkpoint not saved: training diverged at step %d; %s", divergedAt, lastGoodCheckpoint());
      }
      if (!losses.isEmpty()) {
        Bmt.printRank("loss %.4f -> %.4f over steps %d..%d", losses.get(0), losses.get(losses.size() - 1), first, steps - 1);
        if (Bmt.rank() == 0) {
          Path png = checkpointDir.resolve("loss.png");
          try {
            LossPlot.write(png, first, losses, "bmtrain4j: " + built.description() + " on " + data + ", " + Bmt.worldSize() + " rank(s)");
            System.out.println("wrote " + png + (divergedAt < 0 ? " and the sharded checkpoint " + checkpointDir + "/latest" : ""));
          } catch (java.io.IOException | LinkageError e) {
            // A JRE without font libraries (a jlink'd runtime, say) cannot draw: the run itself is fine.
            System.out.println("wrote the sharded checkpoint " + checkpointDir + "/latest; no loss plot: " + e);
          }
        }
      }
      printSample(lm, source, built.maxSeq());
    }
    return 0;
  }

  /** Waits for a background save; a failure is reported, not thrown over the error that ended training. */
  private static void finishBackgroundSave() {
    try {
      ShardedCheckpoint.awaitPendingSave();
    } catch (RuntimeException e) {
      Bmt.printRank("the background checkpoint save failed: %s", e.getMessage());
    }
  }

  /** The model this run trains, how to describe it, and what it was built from. */
  private record Built(LanguageModel model, String description, long parameters, int maxSeq,
      LlamaConfig llamaConfig) {}

  private Built buildGpt(TokenSource source, torch.ScalarType type) {
    GptConfig config = GptConfig.preset(model, source.vocab(), seq, dropout, type).on(device);
    DistributedGpt gpt = new DistributedGpt(config, DistributedTransformerBlock::new);
    return new Built(gpt, "GPT " + model, config.parameterCount(), config.maxSeq(), null);
  }

  /** A LLaMA from a preset (values drawn per rank slice) or from --hf-model (each rank reads its slices). */
  private Built buildLlama(TokenSource source, torch.ScalarType type) {
    LlamaConfig config = hfModel != null
        ? HuggingFaceLlama.readConfig(hfModel, seq, type, device)
        : LlamaConfig.preset(model, source.vocab(), seq, type, device);
    if (source.vocab() > config.vocab()) {
      throw new UserErrors.UserException("the data's vocabulary (" + source.vocab() + ") is larger than the model's ("
          + config.vocab() + "): tokenize the corpus with the model's own tokenizer (train prepare --tokenizer ...)");
    }
    DistributedLlama llama =
        new DistributedLlama(config, DistributedLlamaBlock::new);
    if (lossChunk >= 0) {
      llama.setLossChunkTokens(lossChunk);
    }
    if (hfModel != null) {
      HuggingFaceLlama.load(llama, hfModel);
    } else {
      Bmt.initParameters(llama);
    }
    String what = hfModel != null ? "LLaMA from " + hfModel : "LLaMA " + model;
    return new Built(llama, what, config.parameterCount(), config.maxSeq(), config);
  }

  /** --save-hf: the model as transformers would save it, with the tokenizer files of --hf-model beside it. */
  private void saveHuggingFace(Built built) throws java.io.IOException {
    HuggingFaceLlama.save(built.model(), built.llamaConfig(), saveHf,
        HuggingFaceLlama.DEFAULT_MAX_FILE_BYTES, hfModel);
    if (Bmt.rank() == 0 && hfModel != null) {
      for (String f : List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")) {
        if (Files.isRegularFile(hfModel.resolve(f))) {
          Files.copy(hfModel.resolve(f), saveHf.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        }
      }
    }
    Bmt.printRank("saved the model as a Hugging Face directory in %s", saveHf);
  }

  /** Where the last checkpoint saved before a divergence is, for the messages that say none was saved after it. */
  private String lastGoodCheckpoint() {
    return ShardedCheckpoint.exists(checkpointDir) ? checkpointDir.resolve("latest") + " still names the last good one"
        : "no checkpoint was written";
  }

  /** What --activation-budget asks for; null keeps every block as its annotation says (recompute). */
  private ActivationBudget activationBudget(boolean gpu) {
    return switch (activationBudget) {
      case "off" -> null;
      case "auto" -> gpu ? ActivationBudget.ofDevice(ActivationBudget.DEFAULT_FRACTION) : null;
      default -> ActivationBudget.parse(activationBudget);
    };
  }

  /** Every option checked before anything starts; a bad one is a usage error (exit 2) naming it. */
  private void validate() {
    CommandLine cl = spec.commandLine();
    require(cl, nproc >= 0, "--nproc must be 0 (as the environment says) or a number of ranks, got " + nproc);
    require(cl, microBatch >= 1, "--micro-batch must be at least 1, got " + microBatch);
    require(cl, gradAccum >= 1, "--grad-accum must be at least 1, got " + gradAccum);
    require(cl, steps >= 1, "--steps must be at least 1, got " + steps);
    require(cl, seq >= 2, "--seq must be at least 2 (an input and its next token), got " + seq);
    int prompt = TokenSource.SYNTHETIC_PERIOD + 2;
    require(cl, !data.equals("synthetic") || seq > prompt,
        "--seq must be greater than " + prompt + " with synthetic data (the sample's prompt is " + prompt + " tokens), got " + seq);
    require(cl, Double.isFinite(lr) && lr > 0, "--lr must be a positive number, got " + lr);
    if (!activationBudget.equals("auto") && !activationBudget.equals("off")) {
      try {
        ActivationBudget.parse(activationBudget);
      } catch (IllegalArgumentException e) {
        require(cl, false, "--activation-budget must be auto, off, a share or a size: " + e.getMessage());
      }
    }
    if (cl.getParseResult() != null && !cl.getParseResult().hasMatchedOption("--warmup")) {
      warmup = Math.min(warmup, steps - 1); // a short run gets a shorter default warmup
    }
    require(cl, warmup >= 0, "--warmup must be 0 or more, got " + warmup);
    require(cl, warmup < steps, "--warmup (" + warmup + ") must be less than --steps (" + steps + ")");
    require(cl, Double.isFinite(weightDecay) && weightDecay >= 0, "--weight-decay must be 0 or more, got " + weightDecay);
    require(cl, Double.isFinite(clip) && clip > 0, "--clip must be positive, got " + clip);
    require(cl, dropout >= 0 && dropout < 1, "--dropout must be in [0, 1), got " + dropout);
    require(cl, checkpointEvery >= 0, "--checkpoint-every must be 0 (only at the end) or more, got " + checkpointEvery);
    require(cl, keepLast >= 0, "--keep-last must be 0 (keep all) or more, got " + keepLast);
    require(cl, timeoutSeconds >= 1, "--timeout must be at least 1 second, got " + timeoutSeconds);
    require(cl, threads >= 0, "--threads must be 0 (automatic) or more, got " + threads);
    require(cl, vocab >= 2, "--vocab must be at least 2, got " + vocab);
    require(cl, List.of("fp32", "bf16", "fp16").contains(dtype), "--dtype must be fp32, bf16 or fp16, got " + dtype);
    require(cl, arch.equals("gpt") || arch.equals("llama"), "--arch must be gpt or llama, got " + arch);
    List<String> presets = arch.equals("gpt") ? GptConfig.PRESETS : LlamaConfig.PRESETS;
    require(cl, presets.contains(model), "--model must be one of " + presets + " with --arch " + arch + ", got " + model);
    require(cl, arch.equals("llama") || (hfModel == null && saveHf == null), "--hf-model and --save-hf need --arch llama");
    require(cl, arch.equals("gpt") || dropout == 0, "--dropout applies to --arch gpt (LLaMA has none)");
    require(cl, lossChunk >= -1, "--loss-chunk must be 0 (whole logits) or more tokens, got " + lossChunk);
    require(cl, arch.equals("llama") || lossChunk == -1, "--loss-chunk applies to --arch llama");
    require(cl, hfModel == null || Files.isRegularFile(hfModel.resolve("config.json")),
        "--hf-model " + hfModel + " holds no config.json: give a Hugging Face model directory");
    require(cl, tokenizer == null || Files.exists(tokenizer), "--tokenizer " + tokenizer + " does not exist");
    require(cl, LrSchedulers.NAMES.contains(schedule), "--lr-schedule must be one of " + LrSchedulers.NAMES + ", got " + schedule);
    require(cl, device.equals("cpu") || device.equals("cuda") || device.matches("cuda:\\d{1,4}"),
        "--device must be cpu, cuda or cuda:N, got " + device);
    String dataProblem = TokenSource.problem(data);
    require(cl, dataProblem == null, "--data " + dataProblem);
    String dirProblem = CheckpointDirectory.problem(checkpointDir, resume);
    require(cl, dirProblem == null, "--checkpoint-dir " + dirProblem);
  }

  private static void require(CommandLine cl, boolean ok, String message) {
    if (!ok) {
      throw new CommandLine.ParameterException(cl, message);
    }
  }

  private TrainingProgress progress(int first) {
    return Bmt.rank() == 0 ? TrainingProgress.create("train", first, steps, System.out) : TrainingProgress.none();
  }

  /** A prompt, and what the model makes of it (greedy). Every rank runs it; rank 0 prints. */
  private void printSample(LanguageModel lm, TokenSource source, int maxSeq) {
    Tensor[] b = source.batch(1_000_000, 0, 1);
    long[] all = toLongs(b[0]);
    int promptLength = source instanceof RepeatedPatternTask ? ((RepeatedPatternTask) source).period() + 2 : Math.min(16, seq / 2);
    long[] prompt = java.util.Arrays.copyOf(all, promptLength);
    int count = Math.min(seq - promptLength, 24);
    long[] out = Sampler.greedy(lm, prompt, count, maxSeq, device);
    long[] continuation = java.util.Arrays.copyOfRange(out, promptLength, out.length);
    long[] expected = java.util.Arrays.copyOfRange(all, promptLength, promptLength + count);
    int right = 0;
    for (int i = 0; i < count; i++) {
      right += continuation[i] == expected[i] ? 1 : 0;
    }
    java.util.function.Function<long[], String> decode = source::decode;
    Path tokenizerFile = tokenizer != null ? tokenizer : hfModel;
    if (tokenizerFile != null && source instanceof MappedTokens) {
      TextTokenizer tok = TextTokenizer.open(tokenizerFile);
      decode = ids -> '"' + tok.decode(ids) + '"';
    }
    Bmt.printRank("sample: prompt   %s%n        model    %s%n        data     %s  (%d/%d tokens as in the data)",
        decode.apply(prompt), decode.apply(continuation), decode.apply(expected), right, count);
  }

  private static long[] toLongs(Tensor t) {
    Tensor c = t.contiguous().view(-1);
    long[] out = new long[(int) c.numel()];
    new org.bytedeco.javacpp.LongPointer(c.data_ptr()).get(out);
    return out;
  }
}
