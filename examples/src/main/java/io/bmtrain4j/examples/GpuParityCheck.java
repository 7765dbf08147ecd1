package io.bmtrain4j.examples;

import io.bmtrain4j.dist.Backend;
import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.examples.data.RepeatedPatternTask;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.Gpt;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.examples.gpt.TransformerBlock;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * GPU parity check, run under torchrun (one GPU per rank, NCCL): the sharded GPT's loss and every
 * gradient against a plain libtorch GPT on the whole batch, computed on each rank's own GPU.
 * Exits 0 and prints the largest relative error, or exits 1.
 *
 * <p>Options: {@code --dropout P} (one rank only), {@code --dtype bf16} (tolerances 3e-2 on the loss
 * and 1e-1 on the gradients' max relative error: bf16 keeps 8 bits of mantissa and the sharded run
 * sums in a different order), {@code --d-model D}, {@code --layers L}, {@code --plan mixed} (block 0
 * keeps its graph, block 1 its attention's, the rest recompute).
 */
public final class GpuParityCheck {
  private GpuParityCheck() {}

  public static void main(String[] args) {
    NativeLibraries.load(); // ranks may start together: see NativeLibraries
    Bmt.initDistributed(InitOptions.builder().seed(0).backend(Backend.NCCL).build());
    String device = "cuda:" + Bmt.context().localRank();
    Device dev = new Device(device);
    int batch = 8;
    RepeatedPatternTask task = new RepeatedPatternTask(16, 64, 8, 0);
    // With --dropout P (one rank): the recompute must draw the GPU's masks again, exactly.
    double dropout = 0.0;
    torch.ScalarType dtype = torch.ScalarType.Float;
    int dModel = 128;
    int layers = 4;
    boolean mixedPlan = false; // --plan mixed: block 0 keeps its graph, block 1 its attention, the rest recompute
    for (int a = 0; a + 1 < args.length; a += 2) {
      switch (args[a]) {
        case "--dropout" -> dropout = Double.parseDouble(args[a + 1]);
        case "--dtype" -> dtype = args[a + 1].equals("bf16") ? torch.ScalarType.BFloat16 : torch.ScalarType.Float;
        case "--d-model" -> dModel = Integer.parseInt(args[a + 1]);
        case "--layers" -> layers = Integer.parseInt(args[a + 1]);
        case "--plan" -> mixedPlan = args[a + 1].equals("mixed");
        default -> throw new IllegalArgumentException("unknown option " + args[a] + ": use --dropout, --dtype, --d-model, --layers, --plan mixed");
      }
    }
    boolean bf16 = dtype == torch.ScalarType.BFloat16;
    if (dropout > 0 && Bmt.worldSize() > 1) {
      throw new IllegalArgumentException("--dropout compares masks with the plain model: run it on one rank");
    }
    GptConfig c = new GptConfig(16, 64, dModel, dModel / 32, layers, 4 * dModel, dropout, dtype).on(device);
    Tensor[] b = task.batch(0, 0, batch);
    Tensor in = b[0].to(dev, torch.ScalarType.Long);
    Tensor target = b[1].to(dev, torch.ScalarType.Long);

    torch.manual_seed(0);
    Gpt plain = new Gpt(c, TransformerBlock::new);
    Tensor plainLoss = torch.cross_entropy_loss(plain.forward(in).to(torch.ScalarType.Float).reshape(-1, 16), target.reshape(-1));
    plainLoss.backward();
    List<Tensor> plainGrads = new ArrayList<>();
    plain.visitParameters(p -> plainGrads.add(p.grad()));

    torch.manual_seed(0);
    DistributedGpt sharded = new DistributedGpt(c, DistributedTransformerBlock::new);
    if (mixedPlan) {
      io.bmtrain4j.Bmt.planActivations(sharded, java.util.Map.of("layers.0", io.bmtrain4j.zero.ActivationMode.KEEP,
          "layers.1", io.bmtrain4j.zero.ActivationMode.SELECTIVE));
    }
    int per = batch / Bmt.worldSize();
    int from = Bmt.rank() * per;
    Tensor loss = torch.cross_entropy_loss(sharded.forward(in.narrow(0, from, per)).to(torch.ScalarType.Float).reshape(-1, 16),
        target.narrow(0, from, per).reshape(-1));
    loss.backward();
    double shardedLoss = Bmt.meanLoss(loss);
    Map<String, Tensor> grads = Bmt.gatherGradients(sharded);

    double worst = 0;
    String worstName = "";
    int i = 0;
    for (Map.Entry<String, Tensor> e : grads.entrySet()) {
      Tensor want = plainGrads.get(i++).to(torch.ScalarType.Float);
      double err = e.getValue().to(torch.ScalarType.Float).sub(want).abs().max().item().toDouble() / (want.abs().max().item().toDouble() + 1e-12);
      if (err > worst) {
        worst = err;
        worstName = e.getKey();
      }
    }
    double lossErr = Math.abs(shardedLoss - plainLoss.item().toDouble()) / Math.abs(plainLoss.item().toDouble());
    boolean ok = worst < (bf16 ? 1e-1 : 1e-3) && lossErr < (bf16 ? 3e-2 : 1e-4) && grads.size() == plainGrads.size();
    Bmt.printRank("GPU parity %s (%s, d_model %d, %d layers, dropout %.2f%s): world %d, loss %.6f vs plain %.6f (rel %.2e), %d gradients, max relative error %.2e (%s)",
        ok ? "OK" : "FAILED", bf16 ? "bf16" : "fp32", dModel, layers, dropout,
        mixedPlan ? ", mixed plan" : "", Bmt.worldSize(), shardedLoss, plainLoss.item().toDouble(), lossErr, grads.size(), worst, worstName);
    System.out.flush();
    Runtime.getRuntime().halt(ok ? 0 : 1);
  }
}
