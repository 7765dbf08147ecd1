package io.bmtrain4j.zero;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.dist.CollectiveWaits;
import io.bmtrain4j.testing.RanksAsThreads;
import java.time.Duration;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The collectives one training step issues, counted by {@link CollectiveWaits}: each block's
 * parameters are gathered once per use (forward, and the recompute when there is one), every
 * gather is awaited, and each group's gradients are reduce-scattered once.
 */
class CollectiveScheduleTest {
  @ParameterizedTest(name = "zero {0}, recompute {1}, prefetch {2}")
  @CsvSource({"3,true,2", "3,true,1", "3,false,2", "2,true,2", "2,false,2"})
  void oneStepGathersEachBlockOncePerUseAndReducesItOnce(int zero, boolean recompute, int gathered) {
    int layers = RuntimeParityTest.LAYERS;
    List<CollectiveWaits.Report> reports = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      HandWrittenModels.ShardedNet net;
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(0);
        net = new HandWrittenModels.ShardedNet(RuntimeParityTest.VOCAB, RuntimeParityTest.D, RuntimeParityTest.H, layers, 0,
            new BlockOptions(zero, recompute, gathered));
      }
      CollectiveWaits waits = ctx.comm().collectiveWaits();
      CollectiveWaits.Report report = null;
      for (int step = 0; step < 2; step++) { // the second step is measured: nothing of the first is in flight
        if (step == 1) {
          waits.start();
        }
        Tensor tokens = RuntimeParityTest.tokens(step, ctx.rank() * 2, 2);
        Tensor l = RuntimeParityTest.loss(net.forward(tokens), RuntimeParityTest.targets(step, ctx.rank() * 2, 2));
        l.backward();
        Bmt.finishBackward(net);
      }
      report = waits.stop();
      return report;
    });
    // ZeRO-2 keeps a block gathered from its forward to its backward; ZeRO-3 frees it and gathers
    // again for the backward (recompute or not). The root (the embedding) is one more group.
    int blockGathers = zero == 3 ? 2 : 1;
    for (CollectiveWaits.Report r : reports) {
      CollectiveWaits.Kind gathers = r.kind("all-gather");
      CollectiveWaits.Kind reductions = r.kind("reduce-scatter");
      assertEquals(layers * blockGathers + 1, gathers.issued(), r.describe(1));
      assertEquals(gathers.issued(), gathers.awaited(), r.describe(1));
      assertEquals(layers + 1, reductions.issued(), r.describe(1));
      assertEquals(reductions.issued(), reductions.awaited(), r.describe(1));
    }
  }
}
