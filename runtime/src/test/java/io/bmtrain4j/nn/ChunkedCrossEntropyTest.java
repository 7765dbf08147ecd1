package io.bmtrain4j.nn;

import static io.bmtrain4j.testing.TensorAsserts.assertClose;
import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.testing.RanksAsThreads;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The chunked head + cross-entropy against libtorch's plain log-softmax and NLL on the whole logits. */
class ChunkedCrossEntropyTest {
  static final long ROWS = 2 * 13;
  static final long D = 16;
  static final long VOCAB = 37;

  @BeforeAll
  static void natives() {
    NativeLibraries.load();
  }

  @ParameterizedTest(name = "{0}, ignored targets {1}, class weights {2}, chunks of {3}")
  @CsvSource({"MEAN, false, false, 5", "MEAN, true, false, 4", "SUM, true, true, 7", "MEAN, true, true, 26", "MEAN, false, true, 1"})
  void lossAndGradientsEqualThePlainComputation(ChunkedCrossEntropy.Reduction reduction, boolean ignore, boolean weighted,
      long chunk) {
    try (PointerScope scope = new PointerScope()) {
      Tensor hidden;
      Tensor weight;
      Tensor targets;
      Tensor classWeights;
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(7);
        hidden = torch.randn(2, 13, D).requires_grad_(true);
        weight = torch.randn(VOCAB, D).mul(new Scalar(0.3)).requires_grad_(true);
        targets = torch.randint(VOCAB, new long[] {2, 13});
        classWeights = torch.rand(VOCAB).add(new Scalar(0.5));
      }
      if (ignore) {
        targets.narrow(1, 0, 3).fill_(new Scalar(-100)); // say, padding or the prompt
      }
      if (ignore && chunk == 26) {
        targets.fill_(new Scalar(-100)); // nothing counted: NaN loss (a mean of nothing), zero gradients, as libtorch's
      }
      long libtorchReduction = reduction == ChunkedCrossEntropy.Reduction.MEAN ? 1 : 2;
      Tensor plain = torch.cross_entropy_loss(hidden.matmul(weight.t()).reshape(-1, VOCAB), targets.reshape(-1),
          weighted ? new TensorOptional(classWeights) : new TensorOptional(), libtorchReduction, -100, 0.0);
      plain.mul(new Scalar(1.7)).backward();
      float[] wantHidden = values(hidden.grad());
      float[] wantWeight = values(weight.grad());
      hidden.mutable_grad().put(new Tensor());
      weight.mutable_grad().put(new Tensor());

      Tensor chunked = ChunkedCrossEntropy.apply(hidden, weight, targets,
          new ChunkedCrossEntropy.Options(-100, weighted ? classWeights : null, reduction, chunk));
      assertEquals(0, chunked.dim(), "a scalar, as cross_entropy's");
      if (Double.isNaN(plain.item_double())) {
        assertTrue(Double.isNaN(chunked.item_double()), "a mean over no target is NaN, as libtorch's");
      } else {
        assertClose("loss", values(plain), values(chunked), 1e-5, 1e-6);
      }
      chunked.mul(new Scalar(1.7)).backward();
      assertClose("gradient of the hidden states", wantHidden, values(hidden.grad()), 1e-5, 1e-6);
      assertClose("gradient of the head", wantWeight, values(weight.grad()), 1e-5, 1e-6);
    }
  }
}
