package io.bmtrain4j.examples;

import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.MemoryReport;
import io.bmtrain4j.zero.ShardedParameter;
import org.bytedeco.javacpp.PointerScope;
import io.bmtrain4j.examples.data.RepeatedPatternTask;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.Gpt;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.examples.gpt.TransformerBlock;
import java.util.concurrent.Callable;
import io.bmtrain4j.zero.BlockOptions;
import io.bmtrain4j.zero.ShardedModule;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
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
    NativeLibraries.load(); // ranks may start together: see NativeLibraries
    System.exit(new CommandLine(new Benchmark()).execute(args));
  }

  @Option(names = "--rounds", description = "rounds; variants alternate within a round, the median round counts (default ${DEFAULT-VALUE})")
  int rounds = 3;

  @Override
  public Integer call() {
    Bmt.initDistributed(InitOptions.builder().seed(0).build());
    torch.set_num_threads(threads > 0 ? threads : Threads.perRank());
    int world = Bmt.worldSize();
    int perRank = globalBatch / world;
    GptConfig c = new GptConfig(256, seq, dModel, Math.max(1, dModel / 64), layers, 4 * dModel, 0.0);
    RepeatedPatternTask task = new RepeatedPatternTask(c.vocab(), seq, 16, 0);
    Bmt.printRank("model %,d parameters, world %d, global batch %d x %d tokens, %d libtorch threads per rank",
        c.parameterCount(), world, globalBatch, seq, torch.get_num_threads());
    List<String> names = new ArrayList<>();
    List<Gpt> models = new ArrayList<>();
    if (world == 1) {
      torch.manual_seed(0);
      names.add("plain libtorch");
      models.add(new Gpt(c, TransformerBlock::new));
    }
    String[] variants = {"zero3 recompute prefetch", "zero3 recompute no-prefetch", "zero3 no-recompute", "zero2 no-recompute"};
    BlockOptions[] options = {new BlockOptions(3, true, 2), new BlockOptions(3, true, 1), new BlockOptions(3, false, 2), new BlockOptions(2, false, 2)};
    for (int v = 0; v < variants.length; v++) {
      torch.manual_seed(0);
      DistributedGpt model = new DistributedGpt(c, DistributedTransformerBlock::new);
      Bmt.configureBlocks(model, options[v]);
      names.add("bmtrain4j " + variants[v]);
      models.add(model);
    }
    double[][] ms = new double[models.size()][rounds];
    for (int r = 0; r < rounds; r++) {
      for (int v = 0; v < models.size(); v++) {
        ms[v][r] = time(models.get(v), task, perRank);
      }
    }
    double plain = world == 1 ? median(ms[0]) : Double.NaN;
    for (int v = 0; v < models.size(); v++) {
      double m = median(ms[v]);
      String ratio = Double.isNaN(plain) ? "" : String.format(" (%.2fx plain)", m / plain);
      String memory;
      if (models.get(v) instanceof ShardedModule) {
        MemoryReport rep = afterBackward.get(models.get(v));
        memory = String.format("per rank: parameters %.2f MiB (total/world %.2f MiB), gradients %.2f MiB",
            rep.parameterBytes() / 1048576.0, 4.0 * rep.totalParameters() / world / 1048576.0,
            rep.gradientBytes() / 1048576.0);
      } else {
        memory = String.format("parameters %.2f MiB, gradients %.2f MiB", 4.0 * c.parameterCount() / 1048576.0,
            4.0 * c.parameterCount() / 1048576.0);
      }
      Bmt.printRank("%-40s %8.1f ms/step%s  rounds %s  %s", names.get(v), m, ratio, Arrays.toString(round1(ms[v])), memory);
    }
    return 0;
  }

  private static double median(double[] xs) {
    double[] s = xs.clone();
    Arrays.sort(s);
    return s[s.length / 2];
  }

  private static String[] round1(double[] xs) {
    String[] out = new String[xs.length];
    for (int i = 0; i < xs.length; i++) {
      out[i] = String.format("%.0f", xs[i]);
    }
    return out;
  }

  /** Each sharded model's memory right after its last timed backward (gradients reduced, not yet dropped). */
  private final java.util.Map<Gpt, MemoryReport> afterBackward = new java.util.IdentityHashMap<>();

  @Option(names = "--threads", description = "libtorch threads per rank (default: cores per rank - 1, at least 1)")
  int threads = 0;

  private double time(Gpt model, RepeatedPatternTask task, int batch) {
    Object sharded = model instanceof ShardedModule ? model : null;
    long total = 0;
    for (int step = 0; step < warmup + steps; step++) {
      try (PointerScope scope = new PointerScope()) {
        Tensor[] b = task.batch(step, Bmt.rank(), batch);
        long t0 = System.nanoTime();
        Tensor loss = torch.cross_entropy_loss(model.forward(b[0]).reshape(-1, task.vocab()), b[1].reshape(-1));
        loss.backward();
        if (sharded != null) {
          Bmt.finishBackward(sharded);
          if (step == warmup + steps - 1) {
            afterBackward.put(model, Bmt.memoryReport(sharded));
          }
          for (ShardedParameter p : Bmt.parameters(sharded)) {
            p.zeroBlockGradients();
          }
        } else {
          zeroPlainGrads(model);
        }
        if (step >= warmup) {
          total += System.nanoTime() - t0;
        }
      }
    }
    return total / 1e6 / steps;
  }

  private static void zeroPlainGrads(Gpt model) {
    // A plain model's gradients are reset by dropping them, as optimizer.zero_grad(set_to_none) does.
    model.visitParameters(p -> p.mutable_grad().put(new Tensor()));
  }
}
