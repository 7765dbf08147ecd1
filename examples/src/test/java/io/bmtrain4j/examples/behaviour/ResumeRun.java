package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.dist.DistContext;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LossScale;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.optim.StateDicts;
import io.bmtrain4j.optim.lr.Cosine;
import java.nio.file.Path;
import java.util.Map;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * Exact resume, BMTrain's test_optim_state: Adam with weight decay, a cosine schedule, a dynamic
 * loss scale and dropout. Phase "full" trains 6 steps; "first" trains 3 and saves each rank's
 * model shards and manager state; "second" (a fresh process) loads them and trains steps 3 to 5.
 * "full" and "second" write the gathered parameters for the test to compare bit for bit.
 */
final class ResumeRun {
  private ResumeRun() {}

  static void run(String phase, Path dir, DistContext ctx) throws Exception {
    torch.manual_seed(0);
    Net net = new DistributedNet(0.2, true);
    AdamOptimizer adam = new AdamOptimizer(Bmt.parameters(net), AdamOptions.builder().lr(1e-2).weightDecay(0.05).build());
    OptimManager manager = new OptimManager(LossScale.dynamic(256, 2, 2, 1, 1 << 16))
        .add(adam, new Cosine(adam, 1e-2, 2, 6));
    Path own = dir.resolve("rank" + ctx.rank() + ".state");
    int from = 0;
    int to = 6;
    if (phase.equals("first")) {
      to = 3;
    } else if (phase.equals("second")) {
      Map<String, Tensor> state = StateDicts.load(own);
      Bmt.loadShardStateDict(net, StateDicts.under("model.", state));
      manager.loadStateDict(StateDicts.under("train.", state));
      from = 3;
    }
    int per = Training.BATCH / ctx.worldSize();
    for (int step = from; step < to; step++) {
      try (PointerScope scope = new PointerScope()) {
        manager.zeroGrad();
        Tensor l = Training.loss(net.forward(Training.tokens(step, ctx.rank() * per, per)), step, ctx.rank() * per, per);
        manager.backward(l);
        manager.clipGradNorm(1.0);
        manager.step();
      }
    }
    if (phase.equals("first")) {
      Map<String, Tensor> state = new java.util.LinkedHashMap<>();
      state.putAll(StateDicts.prefixed("model.", Bmt.shardStateDict(net)));
      state.putAll(StateDicts.prefixed("train.", manager.stateDict()));
      StateDicts.save(state, own);
    } else {
      Map<String, Tensor> params = Bmt.gatherParameters(net);
      if (ctx.rank() == 0) {
        StateDicts.save(params, dir.resolve(phase + ".params"));
      }
      Bmt.synchronize();
    }
  }
}
