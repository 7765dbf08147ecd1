package io.bmtrain4j.examples;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.examples.data.RepeatedPatternTask;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LossScale;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.optim.lr.LrSchedulers;
import java.util.concurrent.Callable;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Trains the example GPT on the synthetic repeated-pattern task with ZeRO-3 sharding. One process
 * by default; under torchrun (or Slurm) each process is one rank.
 */
@Command(name = "train", mixinStandardHelpOptions = true, description = "Train the example GPT with bmtrain4j.")
public final class Train implements Callable<Integer> {
  @Option(names = "--steps", description = "optimizer steps (default ${DEFAULT-VALUE})")
  int steps = 150;

  @Option(names = "--batch", description = "sequences per rank per step (default ${DEFAULT-VALUE})")
  int batch = 16;

  @Option(names = "--seq", description = "sequence length (default ${DEFAULT-VALUE})")
  int seq = 32;

  @Option(names = "--lr", description = "learning rate (default ${DEFAULT-VALUE})")
  double lr = 3e-3;

  @Option(names = "--seed", description = "seed shared by every rank (default ${DEFAULT-VALUE})")
  long seed = 0;

  @Option(names = "--threads", description = "libtorch threads per rank (default: cores per rank - 1, at least 1)")
  int threads = 0;

  @Option(names = "--log-every", description = "print the loss every N steps (default ${DEFAULT-VALUE})")
  int logEvery = 10;

  @Option(names = "--lr-schedule", description = "one of ${COMPLETION-CANDIDATES} (default ${DEFAULT-VALUE})",
      completionCandidates = Schedules.class)
  String schedule = "noDecay";

  @Option(names = "--warmup", description = "warmup steps (default ${DEFAULT-VALUE})")
  int warmup = 10;

  @Option(names = "--weight-decay", description = "decoupled weight decay (default ${DEFAULT-VALUE})")
  double weightDecay = 0.0;

  @Option(names = "--clip", description = "clip gradients to this global norm (default ${DEFAULT-VALUE})")
  double clip = 1.0;

  /** The schedule names picocli lists in --help. */
  static final class Schedules extends java.util.ArrayList<String> {
    private static final long serialVersionUID = 1L;

    Schedules() {
      super(LrSchedulers.NAMES);
    }
  }

  public static void main(String[] args) {
    System.exit(new CommandLine(new Train()).execute(args));
  }

  @Override
  public Integer call() {
    Bmt.initDistributed(InitOptions.builder().seed(seed).build());
    torch.set_num_threads(threads > 0 ? threads : Threads.perRank());
    RepeatedPatternTask task = new RepeatedPatternTask(16, seq, 8, seed);
    GptConfig config = GptConfig.tiny(task.vocab(), seq);
    DistributedGpt model = new DistributedGpt(config, DistributedTransformerBlock::new);
    Bmt.printRank("GPT with %,d parameters on %d rank(s); %s", config.parameterCount(), Bmt.worldSize(), Bmt.memoryReport(model));
    try (AdamOptimizer adam = new AdamOptimizer(Bmt.parameters(model),
        AdamOptions.builder().lr(lr).weightDecay(weightDecay).build())) {
      OptimManager manager = new OptimManager(LossScale.none())
          .add(adam, LrSchedulers.create(schedule, adam, lr, warmup, steps, 0.99));
      double first = Double.NaN;
      double last = Double.NaN;
      for (int step = 0; step < steps; step++) {
        // Every tensor of the step is freed when its scope closes, not when the GC gets round to it.
        try (PointerScope scope = new PointerScope()) {
          Tensor[] b = task.batch(step, Bmt.rank(), batch);
          Tensor logits = model.forward(b[0]);
          Tensor loss = torch.cross_entropy_loss(logits.reshape(-1, task.vocab()), b[1].reshape(-1));
          manager.zeroGrad();
          manager.backward(loss);
          double norm = manager.clipGradNorm(clip);
          manager.step();
          last = Bmt.sumLoss(loss);
          if (step == 0) {
            first = last;
          }
          if (step % logEvery == 0 || step == steps - 1) {
            Bmt.printRank("step %4d  loss %.4f  grad norm %.3f  lr %.2e", step, last, norm, adam.learningRate());
          }
        }
      }
      Bmt.printRank("loss %.4f -> %.4f over %d steps", first, last, steps);
    }
    return 0;
  }
}
