package io.bmtrain4j.examples.behaviour;

import static io.bmtrain4j.testing.TensorAsserts.assertClose;
import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.Gpt;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.examples.gpt.TransformerBlock;
import io.bmtrain4j.testing.RanksAsThreads;
import io.bmtrain4j.zero.ActivationBudget;
import io.bmtrain4j.zero.ActivationMode;
import io.bmtrain4j.zero.ActivationPlan;
import io.bmtrain4j.zero.ShardedParameter;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * What blocks keep for backward (all, their attention only, or nothing), by hand or by the
 * activation budget, changes no loss and no gradient: the sharded GPT against a plain libtorch
 * GPT on the same batch.
 */
class ActivationPlanTest {
  static final int VOCAB = 16;
  static final int SEQ = 8;
  static final int BATCH = 4;
  static final int STEPS = 3;
  static final double LR = 0.05;

  static final Map<String, ActivationMode> MIXED = Map.of("layers.0", ActivationMode.KEEP, "layers.1",
      ActivationMode.SELECTIVE, "layers.2", ActivationMode.RECOMPUTE);

  static GptConfig config(double dropout) {
    return new GptConfig(VOCAB, SEQ, 32, 4, 3, 64, dropout, torch.ScalarType.Float);
  }

  /** A model whose activations (MiBs a block) stand well above the noise of the host allocator's counters. */
  static final GptConfig ROOMY = new GptConfig(VOCAB, 128, 128, 4, 3, 512, 0.0, torch.ScalarType.Float);

  static Tensor roomyTokens(int batch) {
    return torch.arange(new Scalar(batch * 128)).remainder(new Scalar(VOCAB)).view(batch, 128);
  }

  static Tensor tokens(int step, int from, int count) {
    return torch.arange(new Scalar(BATCH * SEQ)).mul(new Scalar(5)).add(new Scalar(step * 3))
        .remainder(new Scalar(VOCAB)).view(BATCH, SEQ).narrow(0, from, count);
  }

  static Tensor loss(Tensor logits, int step, int from, int count) {
    Tensor target = tokens(step, from, count).add(new Scalar(1)).remainder(new Scalar(VOCAB));
    return torch.cross_entropy_loss(logits.reshape(-1, VOCAB), target.reshape(-1));
  }

  record Run(List<Double> losses, Map<String, float[]> gradients, List<String> plans) {}

  static Run plain(double dropout) {
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(0);
      Gpt gpt = new Gpt(config(dropout), TransformerBlock::new);
      List<Tensor> params = new ArrayList<>();
      gpt.visitParameters(params::add);
      List<Double> losses = new ArrayList<>();
      List<float[]> grads = new ArrayList<>();
      for (int step = 0; step < STEPS; step++) {
        params.forEach(p -> p.mutable_grad().put(new Tensor()));
        Tensor l = loss(gpt.forward(tokens(step, 0, BATCH)), step, 0, BATCH);
        l.backward();
        losses.add((double) l.item_float());
        grads.clear();
        params.forEach(p -> grads.add(values(p.grad())));
        try (NoGradGuard g = new NoGradGuard()) {
          params.forEach(p -> p.sub_(p.grad().mul(new Scalar(LR))));
        }
      }
      Map<String, float[]> named = new LinkedHashMap<>();
      for (int i = 0; i < grads.size(); i++) {
        named.put("#" + i, grads.get(i));
      }
      return new Run(losses, named, List.of());
    }
  }

  static List<Run> sharded(int world, double dropout, Consumer<DistributedGpt> setup) {
    return RanksAsThreads.run(world, 0, Duration.ofSeconds(120), ctx -> {
      DistributedGpt gpt;
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(0);
        gpt = new DistributedGpt(config(dropout), DistributedTransformerBlock::new);
      }
      setup.accept(gpt);
      int per = BATCH / world;
      int from = ctx.rank() * per;
      List<Double> losses = new ArrayList<>();
      Map<String, float[]> grads = new LinkedHashMap<>();
      List<String> plans = new ArrayList<>();
      for (int step = 0; step < STEPS; step++) {
        try (PointerScope scope = new PointerScope()) {
          for (ShardedParameter p : Bmt.parameters(gpt)) {
            p.zeroBlockGradients();
          }
          Tensor l;
          // A world of one draws dropout masks from the shared generator: keep it to itself.
          synchronized (world == 1 ? RanksAsThreads.RNG_LOCK : new Object()) {
            l = loss(gpt.forward(tokens(step, from, per)), step, from, per);
            l.backward();
          }
          losses.add(Bmt.meanLoss(l));
          grads.clear();
          int i = 0;
          for (Tensor g : Bmt.gatherGradients(gpt).values()) {
            grads.put("#" + i++, values(g));
          }
          ActivationPlan plan = Bmt.activationPlan(gpt);
          plans.add(plan == null ? null : plan.describe());
          try (NoGradGuard g = new NoGradGuard()) {
            for (ShardedParameter p : Bmt.parameters(gpt)) {
              Tensor grad = p.grad();
              if (grad != null) {
                p.local().sub_(grad.mul(new Scalar(LR)));
              }
            }
          }
        }
      }
      plans.add(Bmt.memoryReport(gpt).toString());
      return new Run(losses, grads, plans);
    });
  }

  static void assertSame(Run expected, Run actual) {
    for (int s = 0; s < STEPS; s++) {
      assertEquals(expected.losses().get(s), actual.losses().get(s), 1e-5 * Math.abs(expected.losses().get(s)), "loss, step " + s);
    }
    assertEquals(expected.gradients().size(), actual.gradients().size());
    for (String k : expected.gradients().keySet()) {
      assertClose("gradient " + k, expected.gradients().get(k), actual.gradients().get(k), 1e-4, 1e-6);
    }
  }

  @ParameterizedTest(name = "world {0}, dropout {1}")
  @CsvSource({"1,0.1", "2,0.0"})
  void aMixedPlanKeepingOneBlockAndOneBlocksAttentionEqualsPlainTraining(int world, double dropout) {
    Run expected = plain(dropout);
    for (Run rank : sharded(world, dropout, gpt -> Bmt.planActivations(gpt, MIXED))) {
      assertSame(expected, rank);
    }
  }

  @Test
  void aGenerousBudgetKeepsEveryBlockAfterOneMeasuredStepAndTrainsTheSame() {
    Run expected = plain(0.1);
    Run run = sharded(1, 0.1, gpt -> Bmt.activationBudget(gpt, ActivationBudget.ofBytes(1L << 40))).get(0);
    assertSame(expected, run);
    assertNull(null);
    String plan = run.plans().get(0);
    assertNotNull(plan, "a plan after the first (measured) step");
    assertTrue(plan.startsWith("activation plan for [4, 8]: keep layers.0-2;"), plan);
    assertEquals(plan, run.plans().get(STEPS - 1), "the plan holds while the shapes do");
    assertTrue(run.plans().get(STEPS).contains(plan), "the memory report names the plan: " + run.plans().get(STEPS));
  }

  @Test
  void aBudgetBelowWhatTheStepAlreadyUsesRecomputesEveryBlockAndTrainsTheSame() {
    Run expected = plain(0.0);
    for (Run rank : sharded(2, 0.0, gpt -> Bmt.activationBudget(gpt, ActivationBudget.ofBytes(1)))) {
      assertSame(expected, rank);
      assertTrue(rank.plans().get(0).startsWith("activation plan for [2, 8]: recompute layers.0-2;"), rank.plans().get(0));
    }
  }

  @Test
  void anotherBatchShapeIsMeasuredOnceAndEvaluationMeasuresNothing() {
    RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      DistributedGpt gpt = new DistributedGpt(ROOMY, DistributedTransformerBlock::new);
      Bmt.activationBudget(gpt, ActivationBudget.parse("90%"));
      java.util.function.IntFunction<ActivationPlan> step = batch -> {
        try (PointerScope scope = new PointerScope()) {
          Tensor in = roomyTokens(batch);
          torch.cross_entropy_loss(gpt.forward(in).reshape(-1, VOCAB), in.reshape(-1)).backward();
          Bmt.finishBackward(gpt);
        }
        return Bmt.activationPlan(gpt);
      };
      ActivationPlan four = step.apply(4);
      assertTrue(four.describe().startsWith("activation plan for [4, 128]: keep layers.0-2;"), four.describe());
      assertTrue(step.apply(4) == four, "the same shapes keep the plan");
      try (PointerScope scope = new PointerScope(); NoGradGuard noGrad = new NoGradGuard()) {
        gpt.forward(roomyTokens(3));
      }
      assertTrue(Bmt.activationPlan(gpt) == four, "a forward without autograd measures nothing");
      ActivationPlan one = step.apply(1);
      assertTrue(one.describe().startsWith("activation plan for [1, 128]: keep layers.0-2;"), one.describe());
      long keptForFour = four.costs().stream().mapToLong(c -> c.keepBytes()).sum();
      long keptForOne = one.costs().stream().mapToLong(c -> c.keepBytes()).sum();
      assertTrue(keptForOne < keptForFour / 2, "a quarter of the batch keeps less: " + one.costs() + " against " + four.costs());
      assertTrue(step.apply(4) == four, "a shape measured before gets its plan back, without a second probe");
      assertTrue(step.apply(1) == one);
      return null;
    });
  }

  @ParameterizedTest(name = "world {0}, dropout {1}")
  @CsvSource({"2, 0.0", "1, 0.1"})
  void aBudgetOverBlocksWithTwoOutputsAndANestedBlockTrainsAsPlainLibtorch(int world, double dropout) {
    // Net: an embedding, blocks, a @Checkpoint block with two outputs of different shapes.
    Training.Plan plan = Training.Plan.of(world, io.bmtrain4j.zero.BlockOptions.defaults()).withDropout(dropout)
        .withSetup(net -> {
          if (net instanceof io.bmtrain4j.zero.ShardedModule) { // the plain reference has no blocks to plan
            Bmt.activationBudget(net, ActivationBudget.parse("90%"));
          }
        });
    Training.Result expected = Training.plain(plan);
    List<Training.Result> ranks = Training.sharded(plan);
    ShardedTrainingTest.assertParity(expected, ranks);
    for (Training.Result r : ranks) {
      ActivationPlan chosen = Bmt.activationPlan(r.models().get(0));
      assertNotNull(chosen, "planned after the first step");
      assertTrue(chosen.modes().containsKey("heads"), chosen.describe());
    }
  }

  @Test
  void aGraphDroppedWithoutBackwardFreesWhatItsBlocksKeptWhenTheStepIsFinished() {
    long[] held = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      DistributedGpt gpt = new DistributedGpt(ROOMY, DistributedTransformerBlock::new);
      Bmt.planActivations(gpt, Map.of("layers.0", ActivationMode.KEEP, "layers.1", ActivationMode.KEEP,
          "layers.2", ActivationMode.SELECTIVE)); // about 10 MiB kept a step
      long[] bytes = new long[6];
      for (int step = 0; step < bytes.length; step++) {
        try (PointerScope scope = new PointerScope()) {
          gpt.forward(roomyTokens(4)); // with autograd on, and never backpropagated
          Bmt.finishBackward(gpt);
        }
        bytes[step] = io.bmtrain4j.internal.HostMalloc.allocatedBytes();
      }
      return bytes;
    }).get(0);
    assertTrue(held[5] - held[1] < 4L << 20, "host memory grew by " + ((held[5] - held[1]) >> 20) + " MiB over 4 steps: "
        + java.util.Arrays.toString(held));
  }

  @Test
  void aPlanNamingNoBlockIsRefusedWithTheBlocksThatExist() {
    RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      DistributedGpt gpt = new DistributedGpt(config(0), DistributedTransformerBlock::new);
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> Bmt.planActivations(gpt, Map.of("layer.1", ActivationMode.KEEP)));
      assertTrue(e.getMessage().contains("'layer.1'") && e.getMessage().contains("layers.0"), e.getMessage());
      return null;
    });
  }
}
