package io.bmtrain4j.testing;

import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** Tensor comparisons for parity tests: values as Java arrays and relative closeness with a readable failure. */
public final class TensorAsserts {
  private TensorAsserts() {}

  /** The tensor's values, flattened, as float32. */
  public static float[] values(Tensor t) {
    Tensor c = t.detach().to(torch.ScalarType.Float).contiguous();
    float[] out = new float[(int) c.numel()];
    try (FloatPointer p = new FloatPointer(c.data_ptr())) {
      p.get(out);
    }
    return out;
  }

  /**
   * Fails unless {@code |actual - expected| <= atol + rtol * |expected|} everywhere, naming
   * {@code what} and the worst element.
   */
  public static void assertClose(String what, float[] expected, float[] actual, double rtol, double atol) {
    if (expected.length != actual.length) {
      throw new AssertionError(what + ": " + actual.length + " elements, expected " + expected.length);
    }
    int worst = -1;
    double worstExcess = 0;
    for (int i = 0; i < expected.length; i++) {
      double err = Math.abs(actual[i] - expected[i]);
      double allowed = atol + rtol * Math.abs(expected[i]);
      if (!(err <= allowed) && (worst < 0 || err - allowed > worstExcess)) {
        worst = i;
        worstExcess = err - allowed;
      }
    }
    if (worst >= 0) {
      throw new AssertionError(String.format("%s differs at [%d]: %.8g vs expected %.8g (rtol %.1g, atol %.1g)",
          what, worst, actual[worst], expected[worst], rtol, atol));
    }
  }
}
