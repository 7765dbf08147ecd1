package io.bmtrain4j.examples.behaviour;

import static io.bmtrain4j.testing.TensorAsserts.assertClose;
import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.MemoryReport;
import io.bmtrain4j.examples.behaviour.Training.Plan;
import io.bmtrain4j.examples.behaviour.Training.Result;
import io.bmtrain4j.testing.RanksAsThreads;
import io.bmtrain4j.zero.BlockOptions;
import io.bmtrain4j.zero.ReleasedParameterException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Parity of the generated sharded classes with plain libtorch on the same seed (losses and every
 * gradient, fp32, 1e-5 relative), and the behaviours BMTrain's tests pin down.
 */
class ShardedTrainingTest {
  static void assertParity(Result expected, List<Result> ranks) {
    for (int r = 0; r < ranks.size(); r++) {
      Result got = ranks.get(r);
      for (int s = 0; s < expected.losses().size(); s++) {
        double e = expected.losses().get(s);
        assertEquals(e, got.losses().get(s), 1e-5 * Math.abs(e), "rank " + r + ": loss at step " + s);
      }
      assertEquals(expected.gradients().keySet(), got.gradients().keySet(), "rank " + r + ": parameters with gradients");
      int rank = r;
      expected.gradients().forEach((k, v) ->
          assertClose("rank " + rank + ": gradient of " + k, v, got.gradients().get(k), 1e-5, 1e-6));
    }
  }

  @ParameterizedTest(name = "world {0}, ZeRO-{1}, recompute {2}")
  @CsvSource({"1,3,true", "2,3,true", "4,3,true", "2,2,true", "2,3,false", "2,2,false", "4,2,false"})
  void shardedTrainingMatchesPlainLibtorch(int world, int zero, boolean recompute) {
    Plan plan = Plan.of(world, new BlockOptions(zero, recompute, 2));
    assertParity(Training.plain(plan), Training.sharded(plan));
  }

  @Test
  void prefetchOffGivesTheSameResult() {
    Plan plan = Plan.of(2, new BlockOptions(3, true, 1));
    assertParity(Training.plain(plan), Training.sharded(plan));
  }

  @Test
  void gradientAccumulationOverMicroBatchesEqualsOneLargerBatch() {
    Plan plan = Plan.of(2, BlockOptions.defaults()).withMicroBatches(2);
    assertParity(Training.plain(plan), Training.sharded(plan));
  }

  @ParameterizedTest(name = "recompute {0}")
  @CsvSource({"true", "false"})
  void dropoutInTrainingDrawsTheSameMasksInRecompute(boolean recompute) {
    Plan plan = Plan.of(1, new BlockOptions(3, recompute, 2)).withDropout(0.3);
    assertParity(Training.plain(plan), Training.sharded(plan));
  }

  @Test
  void dropoutOffInEvaluation() {
    Plan plan = Plan.of(2, BlockOptions.defaults()).withDropout(0.3).withSetup(n -> n.train(false));
    assertParity(Training.plain(plan), Training.sharded(plan));
  }

  @Test
  void frozenParametersGetNoGradientAndOthersStayExact() {
    Plan plan = Plan.of(2, BlockOptions.defaults()).withSetup(n -> {
      n.layers.get(1).w1.requires_grad_(false);
      n.heads.v.requires_grad_(false);
    });
    Result expected = Training.plain(plan);
    assertFalse(expected.gradients().containsKey("layers.1.w1"));
    assertParity(expected, Training.sharded(plan));
  }

  @ParameterizedTest(name = "world {0}, ZeRO-{1}, recompute {2}")
  @CsvSource({"1,3,true", "2,3,true", "2,2,false"})
  void aBlockCalledTwiceInOneForwardGetsBothCallsGradients(int world, int zero, boolean recompute) {
    // Each call's backward hands its own gradients to the block's flat buffer and reduction; the
    // shard gradient must hold their sum, as autograd's accumulation gives the plain model.
    Plan plan = Plan.of(world, new BlockOptions(zero, recompute, 2)).withSetup(n -> n.headsTwice = true);
    assertParity(Training.plain(plan), Training.sharded(plan));
  }

  @Test
  void zeroGradBetweenBackwardAndStepDropsThePendingGradients() {
    // The root collects its gradients only when backward is finished (the optimizer or
    // finishBackward): until then they wait in .grad, and a zeroGrad must drop them too.
    List<Map<String, float[]>> runs = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      java.util.List<Map<String, float[]>> out = new java.util.ArrayList<>();
      for (boolean discardFirst : new boolean[] {true, false}) {
        Net net = (Net) CheckpointModels.fresh(0);
        try (PointerScope step = new PointerScope()) {
          if (discardFirst) {
            Training.loss(net.forward(Training.tokens(1, 0, 1)), 1, 0, 1).backward();
            Bmt.parameters(net).forEach(p -> p.zeroBlockGradients());
          }
          Training.loss(net.forward(Training.tokens(0, 0, 1)), 0, 0, 1).backward();
          Bmt.finishBackward(net);
          Map<String, float[]> grads = new java.util.TreeMap<>();
          Bmt.gatherGradients(net).forEach((k, v) -> grads.put(k, values(v)));
          out.add(grads);
        }
      }
      return out;
    }).get(0);
    runs.get(1).forEach((k, v) -> assertClose("gradient of " + k, v, runs.get(0).get(k), 1e-6, 1e-7));
  }

  @Test
  void blocksWhoseInputsAndParametersNeedNoGradAreNotRecomputed() {
    Plan plan = Plan.of(1, BlockOptions.defaults()).withSetup(n -> {
      n.embed.requires_grad_(false);
      n.pre.weight().requires_grad_(false);
      n.pre.bias().requires_grad_(false);
      n.unsharded.weight().requires_grad_(false);
      n.unsharded.bias().requires_grad_(false);
      Mlp first = n.layers.get(0);
      first.w1.requires_grad_(false);
      first.b1.requires_grad_(false);
      first.w2.requires_grad_(false);
    }).withMicroBatches(1);
    Plan oneStep = new Plan(plan.world(), plan.options(), 0, 1, 1, plan.setup());
    Result expected = Training.plain(oneStep);
    List<Result> got = Training.sharded(oneStep);
    assertParity(expected, got);
    Net net = got.get(0).models().get(0);
    assertEquals(1, net.layers.get(0).calls, "the frozen first block ran once: no recompute");
    assertEquals(2, net.layers.get(1).calls, "the second block ran forward and recompute");
  }

  @Test
  void recomputedBlocksFreeTheirActivationsWhenTheyReturn() {
    // Inside the user's step scope, a recomputed block's temporaries must not wait for that scope
    // to close: held until then, every block's activations would be alive at once.
    List<boolean[]> seen = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      try (PointerScope step = new PointerScope()) {
        Tensor out = net.forward(Training.tokens(0, ctx.rank(), 1));
        boolean hiddenFreed = net.layers.get(0).lastHidden.isNull();
        Tensor loss = Training.loss(out, 0, ctx.rank(), 1);
        loss.backward();
        Bmt.finishBackward(net);
        return new boolean[] {hiddenFreed, !out.isNull() && out.defined()};
      }
    });
    for (boolean[] s : seen) {
      assertTrue(s[0], "the first block's hidden activation is still alive after the block returned");
      assertTrue(s[1], "the block list's output must outlive the block");
    }
  }

  @Test
  void noStrayHandlePinsAGradientBufferWhenNoScopeIsOpen() {
    // On CUDA the backward hooks run on the engine's thread, where no user PointerScope is open.
    // A step run with no scope at all models that: the runtime's temporaries (the per-parameter
    // views into its flat buffers) must not stay alive, pinning a whole block's buffer, until the
    // GC happens to run. At world 1 the shard gradient is the flat gradient buffer itself.
    List<Long> pins = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      Tensor loss = Training.loss(net.forward(Training.tokens(0, ctx.rank(), 1)), 0, ctx.rank(), 1);
      loss.backward();
      Bmt.finishBackward(net);
      long most = 0;
      int groups = 0;
      for (io.bmtrain4j.zero.ShardedModuleRuntime r : Bmt.runtimeOf(net).tree()) {
        io.bmtrain4j.zero.ParameterGroup g = r.group();
        if (g != null && g.shardGrad() != null) {
          try (org.bytedeco.pytorch.Storage storage = g.shardGrad().storage()) {
            most = Math.max(most, storage.use_count());
          }
          groups++;
        }
      }
      assertTrue(groups > 2, "gradients were reduced for " + groups + " groups");
      return most;
    });
    // Only the tensor's own reference (the Storage read here is a view of it, not a copy); 13 before the fix.
    assertEquals(1, pins.get(0), "a gradient buffer is referenced by handles nobody closed");
  }

  @Test
  void backwardOnAThreadWithoutScopeLeavesNoNativeHandleBehind() {
    // libtorch runs CUDA backward on its own device thread, where no user scope is open. Here
    // loss.backward() is called from such a thread: the hooks must free what they create (and
    // what JavaCPP creates for their arguments), or each step leaves handles pinning gradients.
    List<long[]> counts = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      return liveNativeObjectsAfterEachStep(step -> {
        Tensor loss = Training.loss(net.forward(Training.tokens(step, 0, 1)), step, 0, 1);
        Thread engine = new Thread(loss::backward);
        engine.start();
        engine.join();
        Bmt.finishBackward(net);
        for (io.bmtrain4j.zero.ShardedParameter p : Bmt.parameters(net)) {
          p.zeroBlockGradients();
        }
      });
    });
    assertNoGrowthAfterTheFirstStep(counts.get(0)); // before the fix: +22 per step
  }

  /** A step of a leak test; it may block (join a thread). */
  interface Step {
    void run(int step) throws Exception;
  }

  /** Runs 6 steps, each in its own PointerScope, and counts JavaCPP's live native objects after each. */
  static long[] liveNativeObjectsAfterEachStep(Step body) throws Exception {
    long[] live = new long[6];
    for (int step = 0; step < live.length; step++) {
      try (PointerScope scope = new PointerScope()) {
        body.run(step);
      }
      live[step] = org.bytedeco.javacpp.Pointer.totalCount();
    }
    return live;
  }

  /** Steps 2..5 must hold no more live native objects than step 1. */
  static void assertNoGrowthAfterTheFirstStep(long[] live) {
    assertTrue(live[5] <= live[1], "live native objects grew from " + live[1] + " to " + live[5] + " over 4 steps: "
        + java.util.Arrays.toString(live));
  }

  @Test
  void aKeptGraphBlockWithATensorVectorArgumentFreesItsLeavesEveryStep() {
    // With recompute off the block keeps its leaves until backward; a TensorVector hands out a
    // new handle on each read, so the handles closed must be the very ones that were kept.
    List<long[]> counts = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      VectorArgNet net;
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(0);
        net = new DistributedVectorArgNet();
      }
      VectorArgNet model = net;
      return liveNativeObjectsAfterEachStep(step -> {
        Tensor loss = model.forward(Training.tokens(step, 0, 1)).pow(new org.bytedeco.pytorch.Scalar(2.0)).mean();
        loss.backward();
        Bmt.finishBackward(model);
        for (io.bmtrain4j.zero.ShardedParameter p : Bmt.parameters(model)) {
          Tensor g = p.grad();
          assertTrue(g != null && g.abs().sum().item().toDouble() > 0, p.name() + " got no gradient through the vector");
          p.zeroBlockGradients();
        }
      });
    });
    assertNoGrowthAfterTheFirstStep(counts.get(0)); // before the fix: +2 per step
  }

  @Test
  void eachRankHoldsOnlyItsShardAfterConstruction() {
    List<MemoryReport[]> reports = RanksAsThreads.run(4, 0, Duration.ofSeconds(60), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      MemoryReport constructed = Bmt.memoryReport(net);
      Tensor loss = Training.loss(net.forward(Training.tokens(0, ctx.rank(), 1)), 0, ctx.rank(), 1);
      MemoryReport afterForward = Bmt.memoryReport(net);
      loss.backward();
      Bmt.finishBackward(net);
      return new MemoryReport[] {constructed, afterForward, Bmt.memoryReport(net)};
    });
    for (MemoryReport[] r : reports) {
      double perRank = 4.0 * r[0].totalParameters() / 4;
      // Each block is padded to a multiple of the world size: at most world-1 elements per block.
      assertTrue(Math.abs(r[0].parameterBytes() - perRank) <= 0.05 * perRank, r[0].toString());
      assertEquals(0, r[0].gatheredBytes(), "nothing gathered after construction: " + r[0]);
      assertEquals(0, r[0].gradientBytes(), r[0].toString());
      // After forward only the root's own parameters (embed, pre) stay gathered, waiting for backward.
      long rootBytes = 4L * (Net.VOCAB * Net.D + Net.D * Net.D + Net.D);
      assertTrue(r[1].gatheredBytes() >= rootBytes && r[1].gatheredBytes() < rootBytes + 64, r[1].toString());
      assertEquals(0, r[2].gatheredBytes(), "everything released after the gradients are reduced: " + r[2]);
      assertTrue(r[2].gradientBytes() > 0, r[2].toString());
    }
  }

  @Test
  void aParameterReadWhileItsBlockIsReleasedIsNamed() {
    List<String> messages = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      Net net = (Net) CheckpointModels.fresh(0);
      DistributedNet sharded = (DistributedNet) net;
      return assertThrows(ReleasedParameterException.class, () -> sharded.peekFirstBlockWeight(torch.randn(2, 3, Net.D))).getMessage();
    });
    assertTrue(messages.get(0).contains("layers.0.w1"), messages.get(0));
    assertTrue(messages.get(0).contains("@EntryPoint"), messages.get(0));
  }

  @Test
  void aPlainBlockInTheListFailsConstructionNamingIndexAndClass() {
    List<String> messages = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx ->
        assertThrows(IllegalStateException.class, () -> new DistributedNet(0, false)).getMessage());
    assertTrue(messages.get(0).contains("Net.layers[0] holds a plain io.bmtrain4j.examples.behaviour.Mlp"), messages.get(0));
    assertTrue(messages.get(0).contains("new io.bmtrain4j.examples.behaviour.DistributedMlp(...)"), messages.get(0));
  }

  @Test
  void evaluationUnderNoGradMatchesPlainOutputsAndKeepsNothingGathered() {
    float[] want;
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(0);
      Net plain = new Net(0.3, false);
      plain.train(false);
      try (NoGradGuard g = new NoGradGuard()) {
        want = values(plain.forward(Training.tokens(9, 0, Training.BATCH)));
      }
    }
    List<Object[]> got = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      Net net;
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(0);
        net = new DistributedNet(0.3, true);
      }
      net.train(false);
      try (NoGradGuard g = new NoGradGuard()) {
        float[] out = values(net.forward(Training.tokens(9, 0, Training.BATCH)));
        return new Object[] {out, Bmt.memoryReport(net)};
      }
    });
    for (Object[] r : got) {
      assertClose("eval logits", want, (float[]) r[0], 1e-5, 1e-6);
      assertEquals(0, ((MemoryReport) r[1]).gatheredBytes(), r[1].toString());
    }
  }
}
