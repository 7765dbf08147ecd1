package io.bmtrain4j.init;

import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.natives.NativeLibraries;
import java.util.Arrays;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The counter-based stream: any slice equals the same part of the whole, and the values look like their distribution. */
class CounterRandomTest {
  static final Device CPU = new Device("cpu");

  @BeforeAll
  static void natives() {
    NativeLibraries.load();
  }

  @Test
  void aSliceIsThatPartOfTheWholeWhereverItStarts() {
    try (PointerScope scope = new PointerScope()) {
      CounterRandom r = CounterRandom.forParameter(42, "layers.3.wq");
      float[] whole = values(r.normal(0, 200_000, CPU).to(torch.ScalarType.Float));
      long block = CounterRandom.blockSize(CPU);
      for (long[] slice : new long[][] {{0, 17}, {4999, 2}, {3333, 3334}, {9990, 10}, {block - 7, 20}, {block - 1, 2 * block + 5}}) {
        float[] part = values(r.normal(slice[0], slice[1], CPU).to(torch.ScalarType.Float));
        assertArrayEquals(Arrays.copyOfRange(whole, (int) slice[0], (int) (slice[0] + slice[1])), part, 0f,
            "elements " + slice[0] + ".." + (slice[0] + slice[1]));
      }
      // Element indices beyond 2^32 (parameters of billions of elements) are blocks of their own.
      float[] far = values(r.uniform((1L << 32) + 5, 3, CPU).to(torch.ScalarType.Float));
      float[] near = values(r.uniform(5, 3, CPU).to(torch.ScalarType.Float));
      assertFalse(Arrays.equals(far, near));
    }
  }

  @Test
  void theValuesFollowTheirDistributionAndDependOnSeedAndPath() {
    try (PointerScope scope = new PointerScope()) {
      Tensor n = CounterRandom.forParameter(1, "embed").normal(0, 200_000, CPU);
      assertEquals(0.0, n.mean().item_double(), 0.01, "mean");
      assertEquals(1.0, n.std().item_double(), 0.01, "standard deviation");
      assertTrue(n.abs().max().item_double() < 7, "no outlandish values");
      Tensor u = CounterRandom.forParameter(1, "embed").uniform(0, 200_000, CPU);
      assertTrue(u.min().item_double() >= 0 && u.max().item_double() < 1, "in [0, 1)");
      assertEquals(0.5, u.mean().item_double(), 0.005);
      // Neighbouring elements are not correlated.
      Tensor a = n.narrow(0, 0, 199_999);
      Tensor b = n.narrow(0, 1, 199_999);
      assertEquals(0.0, a.mul(b).mean().item_double(), 0.01, "lag-1 correlation");
      float[] base = values(CounterRandom.forParameter(1, "embed").normal(0, 8, CPU).to(torch.ScalarType.Float));
      assertFalse(Arrays.equals(base, values(CounterRandom.forParameter(2, "embed").normal(0, 8, CPU).to(torch.ScalarType.Float))), "seed");
      assertFalse(Arrays.equals(base, values(CounterRandom.forParameter(1, "embed2").normal(0, 8, CPU).to(torch.ScalarType.Float))), "path");
    }
  }

  @Test
  void fillingSeveralTensorsFromOneGeneratorGivesDifferentValues() {
    try (PointerScope scope = new PointerScope()) {
      org.bytedeco.pytorch.Generator g = torch.make_generator_cpu(5);
      Tensor a = torch.empty(64);
      Tensor b = torch.empty(64);
      Initializer.normal(1.0).fill(a, g);
      Initializer.normal(1.0).fill(b, g);
      assertFalse(Arrays.equals(values(a), values(b)), "the generator advanced between the fills");
      Tensor again = torch.empty(64);
      Initializer.normal(1.0).fill(again, torch.make_generator_cpu(5));
      assertArrayEquals(values(a), values(again), 0f, "the same generator state gives the same values");
    }
  }

  @Test
  void aUserFunctionStillFillsItsSliceFromTheWholeParameter() {
    try (PointerScope scope = new PointerScope()) {
      Initializer arange = Initializer.of((t, g) -> t.copy_(torch.arange(new Scalar(t.numel())).view(t.sizes())));
      Tensor slice = torch.empty(5);
      arange.fillSlice(slice, new long[] {4, 6}, 7, 0, "w");
      assertArrayEquals(new float[] {7, 8, 9, 10, 11}, values(slice), 0f);
    }
  }
}
