package io.bmtrain4j.examples;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.examples.data.RepeatedPatternTask;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.GptConfig;
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

  @Option(names = "--log-every", description = "print the loss every N steps (default ${DEFAULT-VALUE})")
  int logEvery = 10;

  public static void main(String[] args) {
    System.exit(new CommandLine(new Train()).execute(args));
  }

  @Override
  public Integer call() {
    Bmt.initDistributed(InitOptions.builder().seed(seed).build());
    RepeatedPatternTask task = new RepeatedPatternTask(16, seq, 8, seed);
    GptConfig config = GptConfig.tiny(task.vocab(), seq);
    DistributedGpt model = new DistributedGpt(config, DistributedTransformerBlock::new);
    Bmt.printRank("GPT with %,d parameters on %d rank(s); %s", config.parameterCount(), Bmt.worldSize(), Bmt.memoryReport(model));
    try (ShardAdam optimizer = new ShardAdam(model, lr)) {
      double first = Double.NaN;
      double last = Double.NaN;
      for (int step = 0; step < steps; step++) {
        // Every tensor of the step is freed when its scope closes, not when the GC gets round to it.
        try (PointerScope scope = new PointerScope()) {
          Tensor[] b = task.batch(step, Bmt.rank(), batch);
          Tensor logits = model.forward(b[0]);
          Tensor loss = torch.cross_entropy_loss(logits.reshape(-1, task.vocab()), b[1].reshape(-1));
          optimizer.zeroGrad();
          loss.backward();
          optimizer.step();
          last = Bmt.sumLoss(loss);
        }
        if (step == 0) {
          first = last;
        }
        if (step % logEvery == 0 || step == steps - 1) {
          Bmt.printRank("step %4d  loss %.4f", step, last);
        }
      }
      Bmt.printRank("loss %.4f -> %.4f over %d steps", first, last, steps);
    }
    return 0;
  }
}
