package io.bmtrain4j.examples;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.MemoryReport;
import io.bmtrain4j.examples.data.RepeatedPatternTask;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.Gpt;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.examples.gpt.TransformerBlock;
import java.util.concurrent.Callable;
import io.bmtrain4j.zero.BlockOptions;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Step time (forward + backward + gradient reduction, optimizer excluded) of the example GPT:
 * plain libtorch against bmtrain4j, side by side in one process, and per-rank memory. Run it
 * under torchrun for world sizes above 1: each rank then processes its share of the global batch.
 */
@Command(name = "benchmark", mixinStandardHelpOptions = true, description = "Compare bmtrain4j with plain libtorch.")
public final class Benchmark implements Callable<Integer> {
  @Option(names = "--global-batch", description = "sequences per step over all ranks (default ${DEFAULT-VALUE})")
  int globalBatch = 16;

  @Option(names = "--seq", description = "sequence length (default ${DEFAULT-VALUE})")
  int seq = 128;

  @Option(names = "--d-model", description = "width (default ${DEFAULT-VALUE})")
  int dModel = 256;

  @Option(names = "--layers", description = "blocks (default ${DEFAULT-VALUE})")
  int layers = 4;

  @Option(names = "--steps", description = "timed steps per variant (default ${DEFAULT-VALUE})")
  int steps = 10;

  @Option(names = "--warmup", description = "untimed steps per variant (default ${DEFAULT-VALUE})")
  int warmup = 3;

  public static void main(String[] args) {
    System.exit(new CommandLine(new Benchmark()).execute(args));
  }

  @Override
  public Integer call() {
    Bmt.initDistributed(InitOptions.builder().seed(0).build());
    int world = Bmt.worldSize();
    int perRank = globalBatch / world;
    GptConfig c = new GptConfig(256, seq, dModel, Math.max(1, dModel / 64), layers, 4 * dModel, 0.0);
    RepeatedPatternTask task = new RepeatedPatternTask(c.vocab(), seq, 16, 0);
    Bmt.printRank("model %,d parameters, world %d, global batch %d x %d tokens, %d threads per rank",
        c.parameterCount(), world, globalBatch, seq, torch.get_num_threads());
    double plain = Double.NaN;
    if (world == 1) {
      plain = time(new Gpt(c, TransformerBlock::new), task, perRank, null);
      Bmt.printRank("plain libtorch                 %8.1f ms/step   parameters+grads %.2f MiB", plain, 2 * 4.0 * c.parameterCount() / (1 << 20));
    }
    String[] names = {"zero3 recompute prefetch", "zero3 recompute no-prefetch", "zero3 no-recompute", "zero2 no-recompute"};
    BlockOptions[] options = {new BlockOptions(3, true, 2), new BlockOptions(3, true, 1), new BlockOptions(3, false, 2), new BlockOptions(2, false, 2)};
    for (int v = 0; v < names.length; v++) {
      torch.manual_seed(0);
      DistributedGpt model = new DistributedGpt(c, DistributedTransformerBlock::new);
      Bmt.configureBlocks(model, options[v]);
      double ms = time(model, task, perRank, model);
      MemoryReport m = Bmt.memoryReport(model);
      Bmt.printRank("bmtrain4j %-28s %8.1f ms/step%s   per-rank parameters %.2f MiB, gradients %.2f MiB (total/world %.2f MiB)",
          names[v], ms, Double.isNaN(plain) ? "" : String.format(" (%.2fx plain)", ms / plain),
          m.parameterBytes() / 1048576.0, m.gradientBytes() / 1048576.0, 4.0 * m.totalParameters() / world / 1048576.0);
    }
    return 0;
  }

  private double time(Gpt model, RepeatedPatternTask task, int batch, Object sharded) {
    long total = 0;
    for (int step = 0; step < warmup + steps; step++) {
      Tensor[] b = task.batch(step, Bmt.rank(), batch);
      long t0 = System.nanoTime();
      Tensor loss = torch.cross_entropy_loss(model.forward(b[0]).reshape(-1, task.vocab()), b[1].reshape(-1));
      loss.backward();
      if (sharded != null) {
        Bmt.finishBackward(sharded);
        for (io.bmtrain4j.zero.ShardedModuleRuntime r : Bmt.runtimeOf(sharded).tree()) {
          if (r.group() != null) {
            r.group().zeroShardGrad();
          }
        }
      } else {
        zeroPlainGrads(model);
      }
      if (step >= warmup) {
        total += System.nanoTime() - t0;
      }
      loss.close();
    }
    return total / 1e6 / steps;
  }

  private static void zeroPlainGrads(Gpt model) {
    // A plain model's gradients are reset by dropping them, as optimizer.zero_grad(set_to_none) does.
    model.visitParameters(p -> p.mutable_grad().put(new Tensor()));
  }
}
