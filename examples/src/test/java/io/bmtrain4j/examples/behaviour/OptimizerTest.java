package io.bmtrain4j.examples.behaviour;

import static io.bmtrain4j.testing.TensorAsserts.assertClose;
import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.optim.AdamOffloadOptimizer;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LibtorchOptimizer;
import io.bmtrain4j.optim.LossScale;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.optim.ShardedOptimizer;
import io.bmtrain4j.testing.RanksAsThreads;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Adam;
import org.bytedeco.pytorch.SGD;
import org.bytedeco.pytorch.SGDOptions;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Optimizers and the manager on the sharded {@link Net}, against libtorch on the plain one. */
class OptimizerTest {
  static final double LR = 1e-3;

  /** Plain Net trained with libtorch's Adam; returns per-step losses and final parameters. */
  static Object[] plainAdam(int steps) {
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(0);
      Net net = new Net(0, false);
      TensorVector params = new TensorVector();
      net.namedParameters().values().forEach(params::push_back);
      Adam adam = new Adam(params, new org.bytedeco.pytorch.AdamOptions(LR));
      List<Double> losses = new ArrayList<>();
      for (int step = 0; step < steps; step++) {
        try (PointerScope scope = new PointerScope()) {
          adam.zero_grad();
          Tensor l = Training.loss(net.forward(Training.tokens(step, 0, Training.BATCH)), step, 0, Training.BATCH);
          l.backward();
          adam.step();
          losses.add((double) l.item_float());
        }
      }
      Map<String, float[]> finalParams = new LinkedHashMap<>();
      net.namedParameters().forEach((k, v) -> finalParams.put(k, values(v)));
      return new Object[] {losses, finalParams};
    }
  }

  /** The sharded Net trained through OptimManager with the optimizer {@code make} builds, on each rank's slice. */
  static List<Object[]> shardedRun(int world, int steps, Function<List<ShardedParameter>, ShardedOptimizer> make,
      LossScale scale, int microBatches) {
    return RanksAsThreads.run(world, 0, Duration.ofSeconds(120), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      ShardedOptimizer opt = make.apply(Bmt.parameters(net));
      OptimManager manager = new OptimManager(scale).add(opt, null);
      int per = Training.BATCH / world;
      int micro = per / microBatches;
      List<Double> losses = new ArrayList<>();
      for (int step = 0; step < steps; step++) {
        try (PointerScope scope = new PointerScope()) {
          manager.zeroGrad();
          double loss = 0;
          for (int m = 0; m < microBatches; m++) {
            int from = ctx.rank() * per + m * micro;
            Tensor l = Training.loss(net.forward(Training.tokens(step, from, micro)), step, from, micro);
            manager.backward(l.div(new Scalar((double) microBatches)));
            loss += Bmt.sumLoss(l) / microBatches;
          }
          manager.step();
          losses.add(loss);
        }
      }
      Map<String, float[]> finalParams = new LinkedHashMap<>();
      Bmt.gatherParameters(net).forEach((k, v) -> finalParams.put(k, values(v)));
      opt.close();
      return new Object[] {losses, finalParams};
    });
  }

  @SuppressWarnings("unchecked")
  @ParameterizedTest(name = "world {0}")
  @ValueSource(ints = {1, 2})
  void adamMatchesLibtorchAdamStepForStepOver100Steps(int world) {
    Object[] expected = plainAdam(100);
    for (Object[] got : shardedRun(world, 100, p -> new AdamOptimizer(p, AdamOptions.builder().lr(LR).build()),
        LossScale.none(), 1)) {
      List<Double> want = (List<Double>) expected[0];
      List<Double> have = (List<Double>) got[0];
      for (int s = 0; s < want.size(); s++) {
        assertEquals(want.get(s), have.get(s), 1e-4 * Math.abs(want.get(s)) + 1e-6, "loss at step " + s);
      }
      // Fused and unfused Adam round differently: after 100 steps the weights agree to 1e-4 relative.
      ((Map<String, float[]>) expected[1]).forEach((k, v) ->
          assertClose("parameter " + k, v, ((Map<String, float[]>) got[1]).get(k), 1e-4, 1e-5));
    }
  }

  @SuppressWarnings("unchecked")
  @Test
  void aStepInOneChunkPerBlockMatchesOneWholeStepBitForBit() {
    AdamOptions whole = AdamOptions.builder().lr(LR).weightDecay(0.01).build();
    AdamOptions perBlock = AdamOptions.builder().lr(LR).weightDecay(0.01).stepChunkElements(1).build();
    Object[] a = shardedRun(2, 8, p -> new AdamOptimizer(p, whole), LossScale.none(), 1).get(0);
    Object[] b = shardedRun(2, 8, p -> new AdamOptimizer(p, perBlock), LossScale.none(), 1).get(0);
    assertEquals(a[0], b[0]);
    ((Map<String, float[]>) a[1]).forEach((k, v) -> assertArrayEquals(v, ((Map<String, float[]>) b[1]).get(k), k));
  }

  @SuppressWarnings("unchecked")
  @Test
  void offloadMatchesNonOffloadBitForBit() {
    AdamOptions o = AdamOptions.builder().lr(LR).weightDecay(0.01).build();
    Object[] a = shardedRun(2, 8, p -> new AdamOptimizer(p, o), LossScale.none(), 1).get(0);
    Object[] b = shardedRun(2, 8, p -> new AdamOffloadOptimizer(p, o), LossScale.none(), 1).get(0);
    assertEquals(a[0], b[0]);
    ((Map<String, float[]>) a[1]).forEach((k, v) -> assertArrayEquals(v, ((Map<String, float[]>) b[1]).get(k), k));
  }

  @SuppressWarnings("unchecked")
  @Test
  void accumulatingTwoMicroBatchesEqualsOneBatchTwiceAsLargeWithLibtorchSgd() {
    // SGD (libtorch's, driven over the shards) is linear in the gradient, so the comparison is
    // well conditioned; Adam's first steps amplify rounding in near-zero gradients to +-lr.
    Function<List<ShardedParameter>, ShardedOptimizer> sgd = p -> new LibtorchOptimizer(p, 0.1,
        v -> new SGD(v, new SGDOptions(0.1)), null);
    Object[] one = shardedRun(2, 4, sgd, LossScale.none(), 1).get(0);
    Object[] two = shardedRun(2, 4, sgd, LossScale.none(), 2).get(0);
    ((Map<String, float[]>) one[1]).forEach((k, v) -> assertClose(k, v, ((Map<String, float[]>) two[1]).get(k), 1e-5, 1e-6));
  }

  @SuppressWarnings("unchecked")
  @Test
  void aStaticLossScaleIsRemovedBeforeTheUpdate() {
    AdamOptions o = AdamOptions.builder().lr(LR).build();
    Object[] unscaled = shardedRun(2, 4, p -> new AdamOptimizer(p, o), LossScale.none(), 1).get(0);
    Object[] scaled = shardedRun(2, 4, p -> new AdamOptimizer(p, o), LossScale.fixed(1024), 1).get(0);
    ((Map<String, float[]>) unscaled[1]).forEach((k, v) -> assertClose(k, v, ((Map<String, float[]>) scaled[1]).get(k), 1e-5, 1e-6));
  }

  @Test
  void dynamicLossScaleSkipsTheStepOnAnInfEverywhereThenRaisesItAgain() {
    List<double[]> results = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      AdamOptimizer opt = new AdamOptimizer(Bmt.parameters(net), AdamOptions.builder().lr(LR).build());
      OptimManager manager = new OptimManager(LossScale.dynamic(1024, 2, 2, 1, 1 << 20)).add(opt, null);
      double[] out = new double[8];
      for (int step = 0; step < 4; step++) {
        try (PointerScope scope = new PointerScope()) {
          manager.zeroGrad();
          Tensor l = Training.loss(net.forward(Training.tokens(step, ctx.rank() * 2, 2)), step, ctx.rank() * 2, 2);
          manager.backward(l);
          Map<String, Tensor> before = Bmt.gatherParameters(net);
          if (step == 1 && ctx.rank() == 1) {
            // Inject an overflow into one rank's gradient only: both ranks must skip.
            ShardedParameter p = Bmt.parameters(net).get(0);
            p.grad().fill_(new Scalar(Double.POSITIVE_INFINITY));
          }
          boolean stepped = manager.step();
          out[2 * step] = stepped ? 1 : 0;
          out[2 * step + 1] = manager.lossScale();
          if (!stepped) {
            Map<String, Tensor> after = Bmt.gatherParameters(net);
            before.forEach((k, v) -> assertTrue(torch.equal(v, after.get(k)), "parameter " + k + " changed on a skipped step"));
          }
        }
      }
      return out;
    });
    for (double[] r : results) {
      // step 0: taken (1 clean step); step 1: overflow -> skipped, 1024 -> 512; steps 2, 3 clean -> 1024.
      assertArrayEquals(new double[] {1, 1024, 0, 512, 1, 512, 1, 1024}, r, 0.0);
    }
  }

  @Test
  void clippingUsesTheGlobalNormOfTheUnshardedGradients() {
    double plainNorm;
    Map<String, float[]> plainGrads = new LinkedHashMap<>();
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(0);
      Net net = new Net(0, false);
      Tensor l = Training.loss(net.forward(Training.tokens(0, 0, Training.BATCH)), 0, 0, Training.BATCH);
      l.backward();
      double sq = 0;
      for (Tensor p : net.namedParameters().values()) {
        sq += p.grad().to(torch.ScalarType.Double).pow(new Scalar(2)).sum().item().toDouble();
      }
      plainNorm = Math.sqrt(sq);
      double coefficient = 0.1 / (plainNorm + 1e-6);
      net.namedParameters().forEach((k, p) -> plainGrads.put(k, values(p.grad().mul(new Scalar(coefficient)))));
    }
    List<Object[]> got = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      OptimManager manager = new OptimManager(LossScale.fixed(64))
          .add(new AdamOptimizer(Bmt.parameters(net), AdamOptions.builder().build()), null);
      Tensor l = Training.loss(net.forward(Training.tokens(0, ctx.rank() * 2, 2)), 0, ctx.rank() * 2, 2);
      manager.backward(l);
      double norm = manager.clipGradNorm(0.1);
      Map<String, float[]> grads = new LinkedHashMap<>();
      // Gradients are still multiplied by the loss scale until step(): remove it to compare.
      Bmt.gatherGradients(net).forEach((k, v) -> grads.put(k, values(v.div(new Scalar(64.0)))));
      return new Object[] {norm, grads};
    });
    for (Object[] r : got) {
      assertEquals(plainNorm, (double) r[0], 1e-5 * plainNorm);
      @SuppressWarnings("unchecked")
      Map<String, float[]> grads = (Map<String, float[]>) r[1];
      plainGrads.forEach((k, v) -> assertClose("clipped gradient of " + k, v, grads.get(k), 1e-4, 1e-7));
    }
  }

  @Test
  void groupsTakeTheirOwnLearningRateAndHoldStepsKeepTheWeightsAtFirst() {
    List<boolean[]> changed = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      List<ShardedParameter> all = Bmt.parameters(net);
      List<ShardedParameter> frozenByLr = all.stream().filter(p -> p.name().startsWith("layers.0.")).toList();
      List<ShardedParameter> rest = all.stream().filter(p -> !p.name().startsWith("layers.0.")).toList();
      AdamOptimizer adam = new AdamOptimizer(AdamOptions.builder().lr(LR).holdSteps(2).build(),
          new io.bmtrain4j.optim.HyperparameterGroup(frozenByLr, 0.0, 0.0),
          new io.bmtrain4j.optim.HyperparameterGroup(rest, 1.0, 0.1));
      OptimManager manager = new OptimManager(LossScale.none()).add(adam, null);
      Map<String, Tensor> start = Bmt.gatherParameters(net);
      boolean[] out = new boolean[3];
      for (int step = 0; step < 3; step++) {
        try (PointerScope scope = new PointerScope()) {
          manager.zeroGrad();
          manager.backward(Training.loss(net.forward(Training.tokens(step, ctx.rank() * 2, 2)), step, ctx.rank() * 2, 2));
          manager.step();
          if (step == 1) {
            Map<String, Tensor> held = Bmt.gatherParameters(net);
            out[0] = start.keySet().stream().allMatch(k -> torch.equal(start.get(k), held.get(k)));
          }
        }
      }
      Map<String, Tensor> end = Bmt.gatherParameters(net);
      out[1] = torch.equal(start.get("layers.0.w1"), end.get("layers.0.w1"));
      out[2] = !torch.equal(start.get("layers.1.w1"), end.get("layers.1.w1"));
      return out;
    });
    for (boolean[] r : changed) {
      assertTrue(r[0], "nothing moves during the 2 hold steps");
      assertTrue(r[1], "a group with lr scale 0 stays put");
      assertTrue(r[2], "the other group moves once the hold is over");
    }
  }

  @Test
  void badInputIsRejectedWithTheKeyOrParameterNamed() {
    List<String[]> messages = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      List<ShardedParameter> params = Bmt.parameters(net);
      AdamOptimizer first = new AdamOptimizer(params.subList(0, 3), AdamOptions.builder().build());
      AdamOptimizer overlapping = new AdamOptimizer(params.subList(2, 5), AdamOptions.builder().build());
      OptimManager manager = new OptimManager(LossScale.none()).add(first, null);
      String twice = assertThrows(IllegalArgumentException.class, () -> manager.add(overlapping, null)).getMessage();
      AdamOptimizer other = new AdamOptimizer(params.subList(3, 5), AdamOptions.builder().build());
      String wrongModel = assertThrows(IllegalArgumentException.class, () -> other.loadStateDict(first.stateDict())).getMessage();
      return new String[] {twice, wrongModel, params.get(2).name(), params.get(3).name()};
    });
    String[] m = messages.get(0);
    assertTrue(m[0].contains("parameter " + m[2] + " is already updated by another optimizer"), m[0]);
    assertTrue(m[1].contains("'" + m[3] + ".step'") && m[1].contains("different model"), m[1]);
    assertFalse(m[1].isEmpty());
  }
}
