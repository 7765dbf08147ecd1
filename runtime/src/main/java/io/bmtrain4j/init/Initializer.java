package io.bmtrain4j.init;

import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * How a deferred parameter gets its values ({@code Bmt.parameter(init, shape...)} declares it,
 * {@code Bmt.initParameters(model)} runs it), the same at every world size.
 *
 * <p>The built-in ones ({@link #normal}, {@link #uniform}, {@link #xavierUniform}, {@link #zeros},
 * {@link #ones}) draw from {@link CounterRandom}: each rank computes only its own slice, on its
 * device, with no whole parameter ever on the host. A user function ({@link #of}) fills the whole
 * parameter on the CPU from a generator seeded by the job's seed and the parameter's path, and
 * each rank keeps its slice.
 */
@FunctionalInterface
public interface Initializer {
  /** Fills {@code full} (fp32, the parameter's whole shape) in place, drawing only from {@code generator}. */
  void fill(Tensor full, Generator generator);

  /**
   * Fills {@code slice} with elements {@code [offset, offset + slice.numel())} of the flattened
   * parameter of {@code shape}. By default: the whole parameter on the CPU by {@link #fill}, then
   * the slice copied out (one parameter at a time).
   */
  default void fillSlice(Tensor slice, long[] shape, long offset, long seed, String path) {
    try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope(); NoGradGuard ng = new NoGradGuard()) {
      Tensor full = torch.empty(shape);
      fill(full, generatorFor(seed, path));
      slice.copy_(full.reshape(-1).narrow(0, offset, slice.numel()));
    }
  }

  /** Draws slices from the parameter's {@link CounterRandom} stream, on the slice's device. */
  abstract class CounterBased implements Initializer {
    /** Values (fp32) for elements {@code [offset, offset + count)} of a parameter of {@code shape}. */
    abstract Tensor values(CounterRandom random, long[] shape, long offset, long count, org.bytedeco.pytorch.Device device);

    @Override
    public void fillSlice(Tensor slice, long[] shape, long offset, long seed, String path) {
      if (slice.numel() == 0) {
        return;
      }
      CounterRandom random = CounterRandom.forParameter(seed, path);
      // One block of the stream at a time (see [Note: keyed blocks]): each is drawn once, and a
      // chunk's temporaries are a block's worth (16 MiB of fp32 on a GPU).
      long block = CounterRandom.blockSize(slice.device());
      try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope(); NoGradGuard ng = new NoGradGuard()) {
        Tensor flat = slice.view(-1);
        long from = 0;
        while (from < flat.numel()) {
          long element = offset + from;
          long count = Math.min((element / block + 1) * block - element, flat.numel() - from);
          try (org.bytedeco.javacpp.PointerScope part = new org.bytedeco.javacpp.PointerScope()) {
            // In fp32 first, whatever the parameter's dtype: the values do not depend on it either.
            flat.narrow(0, from, count).copy_(values(random, shape, element, count, slice.device()));
          }
          from += count;
        }
      }
    }

    /**
     * The whole parameter, from a stream keyed by a number drawn from {@code generator}, which
     * advances it: several tensors filled from one generator get different values.
     */
    @Override
    public void fill(Tensor full, Generator generator) {
      long key;
      try (Tensor draw = torch.empty(new long[] {1}, new org.bytedeco.pytorch.TensorOptions()
          .dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Long)), new org.bytedeco.pytorch.MemoryFormatOptional())) {
        draw.random_(new org.bytedeco.pytorch.GeneratorOptional(generator));
        key = draw.item().toLong();
      }
      fillSlice(full, full.sizes().vec().get(), 0, key, "");
    }
  }

  static Initializer normal(double std) {
    return new CounterBased() {
      @Override
      Tensor values(CounterRandom random, long[] shape, long offset, long count, org.bytedeco.pytorch.Device device) {
        return random.normal(offset, count, device).mul(new Scalar(std));
      }
    };
  }

  static Initializer uniform(double from, double to) {
    return new CounterBased() {
      @Override
      Tensor values(CounterRandom random, long[] shape, long offset, long count, org.bytedeco.pytorch.Device device) {
        return random.uniform(offset, count, device).mul(new Scalar(to - from)).add(new Scalar(from));
      }
    };
  }

  /** Glorot/Xavier uniform for a {@code [fanIn, fanOut]} (or {@code [fanOut, fanIn]}) matrix: U(-a, a), a = sqrt(6 / (fanIn + fanOut)). */
  static Initializer xavierUniform() {
    return new CounterBased() {
      @Override
      Tensor values(CounterRandom random, long[] shape, long offset, long count, org.bytedeco.pytorch.Device device) {
        if (shape.length < 2) {
          throw new IllegalArgumentException("xavierUniform needs a matrix, got " + shape.length + " dimensions");
        }
        double a = Math.sqrt(6.0 / (shape[0] + shape[1]));
        return random.uniform(offset, count, device).mul(new Scalar(2 * a)).sub(new Scalar(a));
      }
    };
  }

  static Initializer zeros() {
    return constant(0.0);
  }

  static Initializer ones() {
    return constant(1.0);
  }

  private static Initializer constant(double value) {
    return new CounterBased() {
      @Override
      Tensor values(CounterRandom random, long[] shape, long offset, long count, org.bytedeco.pytorch.Device device) {
        return torch.full(new long[] {count}, new Scalar(value), new org.bytedeco.pytorch.TensorOptions()
            .dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Float)).device(new org.bytedeco.pytorch.DeviceOptional(device)));
      }
    };
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
