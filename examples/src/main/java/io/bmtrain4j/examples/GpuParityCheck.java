package io.bmtrain4j.examples;

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
 */
public final class GpuParityCheck {
  private GpuParityCheck() {}

  public static void main(String[] args) {
    Bmt.initDistributed(InitOptions.builder().seed(0).backend("nccl").build());
    String device = "cuda:" + Bmt.context().localRank();
    Device dev = new Device(device);
    int batch = 8;
    RepeatedPatternTask task = new RepeatedPatternTask(16, 64, 8, 0);
    // With --dropout P (one rank): the recompute must draw the GPU's masks again, exactly.
    double dropout = args.length > 1 && args[0].equals("--dropout") ? Double.parseDouble(args[1]) : 0.0;
    if (dropout > 0 && Bmt.worldSize() > 1) {
      throw new IllegalArgumentException("--dropout compares masks with the plain model: run it on one rank");
    }
    GptConfig c = new GptConfig(16, 64, 128, 4, 4, 512, dropout).on(device);
    Tensor[] b = task.batch(0, 0, batch);
    Tensor in = b[0].to(dev, torch.ScalarType.Long);
    Tensor target = b[1].to(dev, torch.ScalarType.Long);

    torch.manual_seed(0);
    Gpt plain = new Gpt(c, TransformerBlock::new);
    Tensor plainLoss = torch.cross_entropy_loss(plain.forward(in).reshape(-1, 16), target.reshape(-1));
    plainLoss.backward();
    List<Tensor> plainGrads = new ArrayList<>();
    plain.visitParameters(p -> plainGrads.add(p.grad()));

    torch.manual_seed(0);
    DistributedGpt sharded = new DistributedGpt(c, DistributedTransformerBlock::new);
    int per = batch / Bmt.worldSize();
    int from = Bmt.rank() * per;
    Tensor loss = torch.cross_entropy_loss(sharded.forward(in.narrow(0, from, per)).reshape(-1, 16),
        target.narrow(0, from, per).reshape(-1));
    loss.backward();
    double shardedLoss = Bmt.sumLoss(loss);
    Map<String, Tensor> grads = Bmt.gatherGradients(sharded);

    double worst = 0;
    String worstName = "";
    int i = 0;
    for (Map.Entry<String, Tensor> e : grads.entrySet()) {
      Tensor want = plainGrads.get(i++);
      double err = e.getValue().sub(want).abs().max().item().toDouble() / (want.abs().max().item().toDouble() + 1e-12);
      if (err > worst) {
        worst = err;
        worstName = e.getKey();
      }
    }
    double lossErr = Math.abs(shardedLoss - plainLoss.item().toDouble()) / Math.abs(plainLoss.item().toDouble());
    boolean ok = worst < 1e-3 && lossErr < 1e-4 && grads.size() == plainGrads.size();
    Bmt.printRank("GPU parity %s (dropout %.2f): world %d, loss %.6f vs plain %.6f (rel %.2e), %d gradients, max relative error %.2e (%s)",
        ok ? "OK" : "FAILED", dropout, Bmt.worldSize(), shardedLoss, plainLoss.item().toDouble(), lossErr, grads.size(), worst, worstName);
    System.out.flush();
    Runtime.getRuntime().halt(ok ? 0 : 1);
  }
}
