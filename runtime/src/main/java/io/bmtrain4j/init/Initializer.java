package io.bmtrain4j.init;

import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * How a deferred parameter gets its values ({@code Bmt.parameter(init, shape...)} declares it,
 * {@code Bmt.initParameters(model)} runs it). It fills the whole logical parameter from a
 * generator seeded by the job's seed and the parameter's path, so the values do not depend on the
 * world size; each rank then keeps only its slice.
 */
@FunctionalInterface
public interface Initializer {
  /** Fills {@code full} (fp32, the parameter's whole shape) in place, drawing only from {@code generator}. */
  void fill(Tensor full, Generator generator);

  static Initializer normal(double std) {
    return (t, g) -> {
      try (NoGradGuard ng = new NoGradGuard()) {
        t.normal_(0.0, std, new org.bytedeco.pytorch.GeneratorOptional(g));
      }
    };
  }

  static Initializer uniform(double from, double to) {
    return (t, g) -> {
      try (NoGradGuard ng = new NoGradGuard()) {
        t.uniform_(from, to, new org.bytedeco.pytorch.GeneratorOptional(g));
      }
    };
  }

  /** Glorot/Xavier uniform for a {@code [fanIn, fanOut]} (or {@code [fanOut, fanIn]}) matrix: U(-a, a), a = sqrt(6 / (fanIn + fanOut)). */
  static Initializer xavierUniform() {
    return (t, g) -> {
      if (t.dim() < 2) {
        throw new IllegalArgumentException("xavierUniform needs a matrix, got " + t.dim() + " dimensions");
      }
      double a = Math.sqrt(6.0 / (t.size(0) + t.size(1)));
      uniform(-a, a).fill(t, g);
    };
  }

  static Initializer zeros() {
    return (t, g) -> t.zero_();
  }

  static Initializer ones() {
    return (t, g) -> t.fill_(new Scalar(1.0));
  }

  /** A user function; it must draw randomness only from the generator it is given. */
  static Initializer of(Initializer fn) {
    return fn;
  }

  /** A generator for one parameter: the same on every rank and at every world size. */
  static Generator generatorFor(long seed, String path) {
    long s = seed * 0x9E3779B97F4A7C15L ^ path.hashCode() * 0xC2B2AE3D27D4EB4FL;
    return torch.make_generator_cpu(s & Long.MAX_VALUE);
  }
}
