package io.bmtrain4j.zero;

import static io.bmtrain4j.testing.TensorAsserts.assertClose;
import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.testing.RanksAsThreads;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** {@link EarlyStop}: a recompute without the block's last matmul trains exactly as one with it. */
class EarlyStopTest {
  static final int VOCAB = 11;
  static final int D = 8;
  static final int H = 12;
  static final int BATCH = 4;
  static final int SEQ = 5;
  static final int LAYERS = 2;
  static final int STEPS = 2;

  /** What a block does after its hidden activation {@code h}. */
  enum Tail {
    PLAIN, // x + dropout(h @ w2)
    EARLY, // x + dropout(lastMatmul(h, w2))
    EARLY_SCALED, // x + (lastMatmul(h, w2) * 0.5).view(...).clone(): more value-free nodes
    READS_PRODUCT, // x + gelu(lastMatmul(h, w2)): gelu's backward reads the product
    CHAINED, // x + lastMatmul(lastMatmul(h, w2), w): the second matmul's backward reads the first product
    IN_PLACE, // lastMatmul(h, w2).add_(x)
    OPERAND_CHANGED; // h changed in place after lastMatmul(h, w2)

    HandWrittenModels.Tail withDropout(double dropout) {
      return (x, h, w2) -> switch (this) {
        case PLAIN -> x.add(torch.dropout(h.matmul(w2), dropout, true));
        case EARLY -> x.add(torch.dropout(Bmt.lastMatmul(h, w2), dropout, true));
        case EARLY_SCALED -> x.add(Bmt.lastMatmul(h, w2).mul(new Scalar(0.5)).view(-1, D).clone().view(x.sizes()));
        case READS_PRODUCT -> x.add(torch.gelu(Bmt.lastMatmul(h, w2)));
        case CHAINED -> x.add(Bmt.lastMatmul(Bmt.lastMatmul(h, w2), w2.t().narrow(1, 0, D)));
        case IN_PLACE -> Bmt.lastMatmul(h, w2).add_(x);
        case OPERAND_CHANGED -> {
          Tensor product = Bmt.lastMatmul(h, w2);
          h.mul_(new Scalar(2));
          yield x.add(product);
        }
      };
    }
  }

  static Tensor tokens(int step, int from, int count) {
    Tensor all = torch.arange(new Scalar(BATCH * SEQ)).mul(new Scalar(7)).add(new Scalar(step * 3))
        .remainder(new Scalar(VOCAB)).view(BATCH, SEQ);
    return all.narrow(0, from, count);
  }

  static Tensor loss(Tensor logits, int step, int from, int count) {
    Tensor target = tokens(step, from, count).add(new Scalar(1)).remainder(new Scalar(VOCAB));
    return torch.cross_entropy_loss(logits.reshape(-1, VOCAB), target.reshape(-1));
  }

  /** Losses and last gradients of plain libtorch training (no runtime: lastMatmul is a matmul). */
  static Run plain(Tail tail) {
    HandWrittenModels.Net net;
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(0);
      net = new HandWrittenModels.Net(VOCAB, D, H, LAYERS, 0, tail.withDropout(0), false);
    }
    List<Tensor> params = new ArrayList<>(List.of(net.embed));
    for (HandWrittenModels.Block b : net.layers) {
      params.addAll(List.of(b.w1, b.b1, b.w2));
    }
    Run run = new Run();
    for (int step = 0; step < STEPS; step++) {
      params.forEach(p -> p.mutable_grad().put(new Tensor()));
      Tensor l = loss(net.forward(tokens(step, 0, BATCH)), step, 0, BATCH);
      l.backward();
      run.losses.add((double) l.item_float());
      run.grads.put("embed", values(net.embed.grad()));
      for (int i = 0; i < net.layers.size(); i++) {
        HandWrittenModels.Block b = net.layers.get(i);
        run.grads.put("layers." + i + ".w1", values(b.w1.grad()));
        run.grads.put("layers." + i + ".b1", values(b.b1.grad()));
        run.grads.put("layers." + i + ".w2", values(b.w2.grad()));
      }
      sgd(params);
    }
    return run;
  }

  static void sgd(List<Tensor> params) {
    try (org.bytedeco.pytorch.NoGradGuard g = new org.bytedeco.pytorch.NoGradGuard()) {
      for (Tensor p : params) {
        p.sub_(p.grad().mul(new Scalar(0.1)));
      }
    }
  }

  static final class Run {
    final List<Double> losses = new ArrayList<>();
    final Map<String, float[]> grads = new LinkedHashMap<>();
    long recomputes;
    long skipped;
  }

  /** Sharded training, one result per rank. */
  static List<Run> sharded(int world, Tail tail, double dropout, BlockOptions options) {
    return RanksAsThreads.run(world, 0, Duration.ofSeconds(60), ctx -> {
      HandWrittenModels.ShardedNet net;
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(0);
        net = new HandWrittenModels.ShardedNet(VOCAB, D, H, LAYERS, 0, tail.withDropout(dropout), options);
      }
      int per = BATCH / world;
      Run run = new Run();
      for (int step = 0; step < STEPS; step++) {
        synchronized (RanksAsThreads.RNG_LOCK) {
          torch.manual_seed(100 + step); // the same dropout masks for every tail
        }
        for (ShardedModuleRuntime r : net.shardedRuntime().tree()) {
          if (r.group() != null) {
            r.group().gradients().zero();
          }
        }
        Tensor l = loss(net.forward(tokens(step, ctx.rank() * per, per)), step, ctx.rank() * per, per);
        l.backward();
        run.losses.add(Bmt.sumLoss(l));
        run.grads.clear();
        Bmt.gatherGradients(net).forEach((k, v) -> run.grads.put(k, values(v)));
        try (org.bytedeco.pytorch.NoGradGuard g = new org.bytedeco.pytorch.NoGradGuard()) {
          for (io.bmtrain4j.zero.ShardedParameter p : Bmt.parameters(net)) {
            p.local().sub_(p.grad().mul(new Scalar(0.1)));
          }
        }
      }
      for (ShardedModuleRuntime r : net.shardedRuntime().tree()) {
        run.recomputes += r.recomputeCount();
        run.skipped += r.skippedMatmulCount();
      }
      return run;
    });
  }

  static void assertSameTraining(Run expected, Run actual) {
    for (int s = 0; s < STEPS; s++) {
      assertEquals(expected.losses.get(s), actual.losses.get(s), 1e-5 * Math.abs(expected.losses.get(s)), "loss at step " + s);
    }
    assertEquals(expected.grads.keySet(), actual.grads.keySet());
    expected.grads.forEach((k, v) -> assertClose("gradient of " + k, v, actual.grads.get(k), 1e-5, 1e-6));
  }

  @ParameterizedTest(name = "world {0}, {1}")
  @CsvSource({"1,EARLY", "2,EARLY", "2,EARLY_SCALED"})
  void recomputeWithoutTheLastMatmulMatchesPlainLibtorch(int world, Tail tail) {
    Run reference = plain(tail == Tail.EARLY_SCALED ? Tail.EARLY_SCALED : Tail.PLAIN);
    for (Run run : sharded(world, tail, 0, BlockOptions.defaults())) {
      assertSameTraining(reference, run);
      assertEquals((long) LAYERS * STEPS, run.recomputes);
      assertEquals(run.recomputes, run.skipped, "every recompute leaves its last matmul out");
    }
  }

  @Test
  void dropoutAfterTheSkippedMatmulDrawsTheSameMasks() {
    // On the CPU libtorch applies dropout as a product with a mask (MulBackward0).
    Run withMatmul = sharded(1, Tail.PLAIN, 0.3, BlockOptions.defaults()).get(0);
    Run early = sharded(1, Tail.EARLY, 0.3, BlockOptions.defaults()).get(0);
    assertSameTraining(withMatmul, early);
    assertEquals(0, withMatmul.skipped);
    assertEquals(early.recomputes, early.skipped);
  }

  @Test
  void withoutRecomputeNothingIsSkipped() {
    Run reference = plain(Tail.PLAIN);
    Run run = sharded(2, Tail.EARLY, 0, new BlockOptions(3, false, 2)).get(0);
    assertSameTraining(reference, run);
    assertEquals(0, run.recomputes);
    assertEquals(0, run.skipped);
  }

  @Test
  void switchedOffTheRecomputeRunsTheMatmul() {
    Run reference = plain(Tail.PLAIN);
    Run run = sharded(2, Tail.EARLY, 0, new BlockOptions(3, true, 2, false)).get(0);
    assertSameTraining(reference, run);
    assertEquals((long) LAYERS * STEPS, run.recomputes);
    assertEquals(0, run.skipped);
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource({
      "READS_PRODUCT, GeluBackward0",
      "CHAINED, computed from another lastMatmul's result",
      "IN_PLACE, modified in place",
      "OPERAND_CHANGED, operand of lastMatmul was modified in place"})
  void aUseTheRecomputeCannotServeIsRejectedByName(Tail tail, String expected) {
    RuntimeException e = assertThrows(RuntimeException.class, () -> sharded(1, tail, 0, BlockOptions.defaults()));
    StringBuilder message = new StringBuilder();
    for (Throwable t = e; t != null; t = t.getCause()) {
      message.append(t.getMessage()).append('\n');
    }
    assertTrue(message.toString().contains(expected) && message.toString().contains("layers.1"), message.toString());
  }

  /** A block that holds a nested checkpointed block (the runtime's own nesting, as generated code has it). */
  static final class Outer implements ShardedModule {
    final HandWrittenModels.ShardedBlock inner;
    final Tensor w = torch.randn(D, D).mul(new Scalar(0.3)).requires_grad_(true);
    final ShardedModuleRuntime runtime;

    Outer(BlockOptions innerOptions) {
      inner = new HandWrittenModels.ShardedBlock(D, H, 0, Tail.EARLY.withDropout(0));
      runtime = ShardedModuleRuntime.builder("Outer").tensor("w", w).checkpoint("inner", inner, innerOptions, "ShardedBlock").build();
    }

    @Override
    public ShardedModuleRuntime shardedRuntime() {
      return runtime;
    }

    Tensor forward(Tensor x) {
      return runtime.forward(new Object[] {x}, a -> inner.forward(((Tensor) a[0]).matmul(w)).tanh());
    }
  }

  /** Gradients of one step of two {@link Outer} blocks under an embedding and a tied head. */
  static Map<String, float[]> nestedGradients(BlockOptions outerOptions, BlockOptions innerOptions) {
    return RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      Tensor embed;
      List<Outer> layers = new ArrayList<>();
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(0);
        embed = torch.randn(VOCAB, D).mul(new Scalar(0.5)).requires_grad_(true);
        layers.add(new Outer(innerOptions));
        layers.add(new Outer(innerOptions));
      }
      ShardedModuleRuntime root = ShardedModuleRuntime.builder("Root").tensor("embed", embed)
          .blockList("layers", layers, outerOptions, "Outer").build();
      ShardedModule net = () -> root;
      Tensor logits = root.forward(new Object[] {tokens(0, 0, BATCH)}, a -> {
        Tensor x = torch.embedding(embed, (Tensor) a[0]);
        for (Outer o : layers) {
          x = o.forward(x);
        }
        return x.matmul(embed.t());
      });
      loss(logits, 0, 0, BATCH).backward();
      Map<String, float[]> grads = new LinkedHashMap<>();
      Bmt.gatherGradients(net).forEach((k, v) -> grads.put(k, values(v)));
      return grads;
    }).get(0);
  }

  @Test
  void aNestedBlockThatKeepsItsGraphComputesItsOwnLastMatmul() {
    // Inside the outer block's recompute, the inner block's forward builds the graph it keeps:
    // a stand-in there would leave garbage in it.
    BlockOptions keeps = new BlockOptions(3, false, 1);
    Map<String, float[]> full = nestedGradients(new BlockOptions(3, true, 2, false), keeps);
    Map<String, float[]> early = nestedGradients(BlockOptions.defaults(), keeps);
    assertEquals(full.keySet(), early.keySet());
    full.forEach((k, v) -> assertClose("gradient of " + k, v, early.get(k), 1e-5, 1e-6));
  }

  @Test
  void outsideARecomputeItIsAMatmul() {
    try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope()) {
      Tensor input = torch.randn(2, 3, 4);
      Tensor weight = torch.randn(4, 5).requires_grad_(true);
      Tensor product = Bmt.lastMatmul(input, weight);
      assertArrayEquals(values(input.matmul(weight)), values(product));
      assertTrue(product.requires_grad());
      Tensor vector = Bmt.lastMatmul(torch.randn(4), weight);
      assertEquals(5, vector.size(0));
      IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> Bmt.lastMatmul(input, torch.randn(5, 4)));
      assertTrue(bad.getMessage().contains("[2, 3, 4]") && bad.getMessage().contains("[5, 4]"), bad.getMessage());
    }
  }
}
