package io.bmtrain4j.examples.behaviour;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LossScale;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.testing.RanksAsThreads;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

/**
 * bf16 and fp16 parameters with fp32 master weights in the optimizer track the fp32 run. Stated
 * tolerances: every step's loss within 5% (bf16, 8-bit mantissa) or 1% (fp16, 11-bit, with a
 * dynamic loss scale) of the fp32 run's, over 30 Adam steps at world size 2.
 */
class MixedPrecisionTest {
  static final int D = 16;
  static final int STEPS = 30;

  static List<Double> train(torch.ScalarType dtype, LossScale scale) {
    return RanksAsThreads.run(2, 0, Duration.ofSeconds(120), ctx -> {
      MixedNet net;
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(0);
        net = new DistributedMixedNet(D, 2, dtype);
      }
      AdamOptimizer adam = new AdamOptimizer(Bmt.parameters(net), AdamOptions.builder().lr(1e-2).build());
      OptimManager manager = new OptimManager(scale).add(adam, null);
      List<Double> losses = new ArrayList<>();
      for (int step = 0; step < STEPS; step++) {
        try (PointerScope s = new PointerScope()) {
          Tensor x = torch.arange(new Scalar(8 * D)).to(torch.ScalarType.Float).mul(new Scalar(0.37 + ctx.rank()))
              .add(new Scalar(step)).sin().view(8, D);
          Tensor target = x.mul(new Scalar(1.7)).cos();
          Tensor loss = net.forward(x).sub(target).pow(new Scalar(2)).mean();
          manager.zeroGrad();
          manager.backward(loss);
          manager.step();
          losses.add(Bmt.sumLoss(loss));
        }
      }
      if (dtype != torch.ScalarType.Float) {
        // The parameters really are low precision; the masters stay fp32 in the optimizer.
        assertEquals(dtype.value, Bmt.parameters(net).get(0).local().scalar_type().value);
        assertTrue(adam.stateDict().keySet().stream().anyMatch(k -> k.endsWith(".master")));
      }
      // On the CPU, libtorch's fused AdamW updates everything: the GPU kernel is never compiled.
      assertEquals(0, adam.slicesOnMixedPrecisionKernel());
      return losses;
    }).get(0);
  }

  static void assertTracks(List<Double> reference, List<Double> got, double rtol, String what) {
    for (int s = 0; s < reference.size(); s++) {
      assertEquals(reference.get(s), got.get(s), rtol * reference.get(s), what + ": loss at step " + s);
    }
    assertTrue(got.get(got.size() - 1) < 0.7 * got.get(0), what + " learns: " + got);
  }

  @Test
  void bf16AndFp16WithMasterWeightsTrackTheFp32Run() {
    List<Double> fp32 = train(torch.ScalarType.Float, LossScale.none());
    assertTracks(fp32, train(torch.ScalarType.BFloat16, LossScale.none()), 0.05, "bf16");
    assertTracks(fp32, train(torch.ScalarType.Half, LossScale.dynamic(1024)), 0.01, "fp16");
  }
}
