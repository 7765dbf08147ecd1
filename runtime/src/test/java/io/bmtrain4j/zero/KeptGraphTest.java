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

/**
 * Blocks whose last op saves its own output (tanh), followed by a caller that scales the output,
 * in place or not: a block that keeps its graph must hand on outputs that neither its wiring nor
 * the caller can change under that graph.
 */
class KeptGraphTest {
  static final int VOCAB = 11;
  static final int D = 8;
  static final int H = 12;
  static final HandWrittenModels.Tail TANH = (x, h, w2) -> x.add(h.matmul(w2)).tanh();

  static Tensor tokens() {
    return torch.arange(new Scalar(20)).mul(new Scalar(7)).remainder(new Scalar(VOCAB)).view(4, 5);
  }

  /** Embedding, blocks each followed by a doubling, tied head; cross-entropy on shifted tokens. */
  static Tensor loss(Tensor embed, List<? extends HandWrittenModels.Block> layers, boolean inPlace) {
    Tensor x = torch.embedding(embed, tokens());
    for (HandWrittenModels.Block b : layers) {
      x = b.forward(x);
      x = inPlace ? x.mul_(new Scalar(2)) : x.mul(new Scalar(2));
    }
    Tensor target = tokens().add(new Scalar(1)).remainder(new Scalar(VOCAB));
    return torch.cross_entropy_loss(x.matmul(embed.t()).reshape(-1, VOCAB), target.reshape(-1));
  }

  /** Plain libtorch, out of place (in place it would fail: tanh's backward reads its output). */
  static Map<String, float[]> plain() {
    HandWrittenModels.Net net;
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(0);
      net = new HandWrittenModels.Net(VOCAB, D, H, 2, 0, TANH, false);
    }
    loss(net.embed, net.layers, false).backward();
    Map<String, float[]> grads = new LinkedHashMap<>();
    grads.put("embed", values(net.embed.grad()));
    for (int i = 0; i < net.layers.size(); i++) {
      HandWrittenModels.Block b = net.layers.get(i);
      grads.put("layers." + i + ".w1", values(b.w1.grad()));
      grads.put("layers." + i + ".b1", values(b.b1.grad()));
      grads.put("layers." + i + ".w2", values(b.w2.grad()));
    }
    return grads;
  }

  static Map<String, float[]> sharded(BlockOptions options, boolean inPlace) {
    return RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      HandWrittenModels.Net net;
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(0);
        net = new HandWrittenModels.ShardedNet(VOCAB, D, H, 2, 0, TANH, options);
      }
      ShardedModuleRuntime root = ((ShardedModule) net).shardedRuntime();
      Tensor l = root.forward(new Object[] {}, a -> loss(net.embed, net.layers, inPlace));
      l.backward();
      Map<String, float[]> grads = new LinkedHashMap<>();
      Bmt.gatherGradients(net).forEach((k, v) -> grads.put(k, values(v)));
      return grads;
    }).get(0);
  }

  @ParameterizedTest(name = "recompute {0}, caller scales in place {1}")
  @CsvSource({"false,false", "false,true", "true,false", "true,true"})
  void gradientsMatchPlainLibtorch(boolean recompute, boolean inPlace) {
    Map<String, float[]> want = plain();
    Map<String, float[]> got = sharded(new BlockOptions(3, recompute, 1), inPlace);
    assertEquals(want.keySet(), got.keySet());
    want.forEach((k, v) -> assertClose("gradient of " + k, v, got.get(k), 1e-5, 1e-6));
  }
}
