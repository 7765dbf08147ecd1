package io.bmtrain4j.autograd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

/** Ownership rules of {@link CustomBackward} that the block schedule relies on and users may too. */
class CustomBackwardTest {
  @Test
  void aGradientTheBackwardKeepsElsewhereIsDeliveredAndLeftAlive() {
    // A backward may return a tensor it does not own (a cached constant, a field): the gradient
    // must arrive, and the caller's handle must survive the hook's scope.
    Tensor cached = torch.full(new long[] {3}, new Scalar(2.0));
    try (PointerScope step = new PointerScope()) {
      Tensor x = torch.ones(3).requires_grad_(true);
      Tensor y;
      try (NoGradGuard g = new NoGradGuard()) {
        y = x.mul(new Scalar(5.0));
      }
      List<Tensor> wired = CustomBackward.apply(List.of(x), List.of(y), grads -> List.of(cached));
      wired.get(0).sum().backward();
      assertEquals(6.0, x.grad().sum().item().toDouble(), 0.0, "the returned gradient reached the input");
    }
    assertFalse(cached.isNull(), "the backward's cached tensor was closed by the hook");
    assertEquals(6.0, cached.sum().item().toDouble(), 0.0);
    cached.close();
  }

  @Test
  void aGradientCreatedDuringTheBackwardOutlivesTheHooksScope() {
    try (PointerScope step = new PointerScope()) {
      Tensor x = torch.ones(4).requires_grad_(true);
      Tensor y;
      try (NoGradGuard g = new NoGradGuard()) {
        y = x.mul(new Scalar(3.0));
      }
      List<Tensor> wired = CustomBackward.apply(List.of(x), List.of(y), grads -> List.of(grads.get(0).mul(new Scalar(3.0))));
      wired.get(0).sum().backward();
      assertEquals(12.0, x.grad().sum().item().toDouble(), 0.0);
    }
  }

  @Test
  void gradientsAreFreedAsSoonAsBackwardNoLongerNeedsThem() {
    // Each is the size of a block's activations: held until the node retired, they kept two per
    // block alive through the whole backward and into the next step.
    try (PointerScope step = new PointerScope()) {
      Tensor x = torch.ones(4).requires_grad_(true);
      Tensor y;
      try (NoGradGuard g = new NoGradGuard()) {
        y = x.mul(new Scalar(3.0));
      }
      Tensor[] recorded = new Tensor[1];
      List<Tensor> wired = CustomBackward.apply(List.of(x), List.of(y), grads -> {
        recorded[0] = grads.get(0);
        return List.of(grads.get(0).mul(new Scalar(3.0)));
      });
      wired.get(0).mul(new Scalar(2.0)).sum().backward();
      assertEquals(24.0, x.grad().sum().item().toDouble(), 0.0);
      assertTrue(recorded[0].isNull(), "the recorded output gradient is still open after the backward ran");
      // The input gradient lives until the next hook on this thread (here the anchor's, if it ran
      // after the proxy's) or the next apply.
      assertTrue(CustomBackward.handedOverGradients() <= 1, "more than the last input gradient is still open");
      Tensor z = torch.ones(1).requires_grad_(true);
      CustomBackward.apply(List.of(z), List.of(z.detach()), grads -> grads); // the next apply frees it
      assertEquals(0, CustomBackward.handedOverGradients(), "the handed-over input gradient is still open");
    }
  }
}
