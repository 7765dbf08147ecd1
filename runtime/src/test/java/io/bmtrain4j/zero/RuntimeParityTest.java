package io.bmtrain4j.zero;

import static io.bmtrain4j.testing.TensorAsserts.assertClose;
import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertEquals;

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
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Sharded training equals plain libtorch training on the same global batch, step by step. */
class RuntimeParityTest {
  static final int VOCAB = 11;
  static final int D = 8;
  static final int H = 12;
  static final int LAYERS = 3;
  static final int BATCH = 4;
  static final int SEQ = 5;
  static final int STEPS = 3;
  static final double LR = 0.1;

  static Tensor tokens(int step, int from, int count) {
    Tensor all = torch.arange(new Scalar(BATCH * SEQ)).mul(new Scalar(7)).add(new Scalar(step * 3)).remainder(new Scalar(VOCAB)).view(BATCH, SEQ);
    return all.narrow(0, from, count);
  }

  static Tensor targets(int step, int from, int count) {
    return tokens(step, from, count).add(new Scalar(1)).remainder(new Scalar(VOCAB));
  }

  static Tensor loss(Tensor logits, Tensor target) {
    return torch.cross_entropy_loss(logits.reshape(-1, VOCAB), target.reshape(-1));
  }

  /** Reference: plain model, full batch, plain SGD. Returns losses and the gradients of the last step. */
  static Object[] reference() {
    HandWrittenModels.Net net;
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(0);
      net = new HandWrittenModels.Net(VOCAB, D, H, LAYERS, 0, false);
    }
    List<Tensor> params = new ArrayList<>();
    params.add(net.embed);
    for (HandWrittenModels.Block b : net.layers) {
      params.add(b.w1);
      params.add(b.b1);
      params.add(b.w2);
    }
    List<Double> losses = new ArrayList<>();
    Map<String, float[]> grads = new LinkedHashMap<>();
    for (int step = 0; step < STEPS; step++) {
      for (Tensor p : params) {
        p.mutable_grad().put(new Tensor());
      }
      Tensor l = loss(net.forward(tokens(step, 0, BATCH)), targets(step, 0, BATCH));
      l.backward();
      losses.add((double) l.item_float());
      grads.clear();
      grads.put("embed", values(net.embed.grad()));
      for (int i = 0; i < LAYERS; i++) {
        HandWrittenModels.Block b = net.layers.get(i);
        grads.put("layers." + i + ".w1", values(b.w1.grad()));
        grads.put("layers." + i + ".b1", values(b.b1.grad()));
        grads.put("layers." + i + ".w2", values(b.w2.grad()));
      }
      try (org.bytedeco.pytorch.NoGradGuard g = new org.bytedeco.pytorch.NoGradGuard()) {
        for (Tensor p : params) {
          p.sub_(p.grad().mul(new Scalar(LR)));
        }
      }
    }
    return new Object[] {losses, grads};
  }

  @ParameterizedTest(name = "world {0}, zero {1}, recompute {2}")
  @CsvSource({"1,3,true", "2,3,true", "4,3,true", "2,2,true", "2,3,false", "2,2,false"})
  void shardedTrainingMatchesPlainLibtorch(int world, int zero, boolean recompute) {
    Object[] ref = reference();
    @SuppressWarnings("unchecked")
    List<Double> refLosses = (List<Double>) ref[0];
    @SuppressWarnings("unchecked")
    Map<String, float[]> refGrads = (Map<String, float[]>) ref[1];
    List<Object[]> results = RanksAsThreads.run(world, 0, Duration.ofSeconds(60), ctx -> {
      HandWrittenModels.ShardedNet net;
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(0);
        net = new HandWrittenModels.ShardedNet(VOCAB, D, H, LAYERS, 0, new BlockOptions(zero, recompute, 2));
      }
      int per = BATCH / world;
      List<Double> losses = new ArrayList<>();
      Map<String, Tensor> grads = null;
      for (int step = 0; step < STEPS; step++) {
        for (ShardedModuleRuntime r : net.shardedRuntime().tree()) {
          if (r.group() != null) {
            r.group().gradients().zero();
          }
        }
        Tensor l = loss(net.forward(tokens(step, ctx.rank() * per, per)), targets(step, ctx.rank() * per, per));
        l.backward();
        losses.add(Bmt.sumLoss(l));
        grads = Bmt.gatherGradients(net);
        try (org.bytedeco.pytorch.NoGradGuard g = new org.bytedeco.pytorch.NoGradGuard()) {
          for (io.bmtrain4j.zero.ShardedParameter p : Bmt.parameters(net)) {
            p.local().sub_(p.grad().mul(new Scalar(LR)));
          }
        }
      }
      Map<String, float[]> g = new LinkedHashMap<>();
      grads.forEach((k, v) -> g.put(k, values(v)));
      return new Object[] {losses, g};
    });
    for (Object[] r : results) {
      @SuppressWarnings("unchecked")
      List<Double> losses = (List<Double>) r[0];
      for (int s = 0; s < STEPS; s++) {
        assertEquals(refLosses.get(s), losses.get(s), 1e-5 * Math.abs(refLosses.get(s)), "loss at step " + s);
      }
      @SuppressWarnings("unchecked")
      Map<String, float[]> grads = (Map<String, float[]>) r[1];
      assertEquals(refGrads.keySet(), grads.keySet());
      refGrads.forEach((k, v) -> assertClose("gradient of " + k, v, grads.get(k), 1e-5, 1e-6));
    }
  }
}
