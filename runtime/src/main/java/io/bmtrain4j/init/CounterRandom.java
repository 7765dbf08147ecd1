package io.bmtrain4j.init;

import java.nio.charset.StandardCharsets;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * Counter-based random numbers: the value for element {@code i} of a parameter is a pure function
 * of (seed, the parameter's path, {@code i}), computed elementwise by tensor ops on any device.
 * A rank therefore draws exactly its own slice, on its GPU, and the values are the same at every
 * world size, since they never depend on what else was drawn (unlike a generator's stream).
 *
 * <p>The mixing is three rounds of MurmurHash3's 32-bit finaliser over the element index and
 * the key, in int64 tensors holding 32-bit values; each 32-bit multiply is split into two 16-bit
 * halves so no product overflows int64. Normal values come from the Box-Muller transform of two
 * independent lanes, in fp64.
 */
public final class CounterRandom {
  private static final long MASK32 = 0xFFFFFFFFL;

  private final long key;

  private CounterRandom(long key) {
    this.key = key;
  }

  /** The stream of one parameter: (seed, path) hashed into a 64-bit key. */
  public static CounterRandom forParameter(long seed, String path) {
    long h = 0xcbf29ce484222325L; // FNV-1a over the path's UTF-8 bytes
    for (byte b : path.getBytes(StandardCharsets.UTF_8)) {
      h = (h ^ (b & 0xFF)) * 0x100000001b3L;
    }
    return new CounterRandom(splitMix(seed ^ splitMix(h)));
  }

  private static long splitMix(long z) {
    z += 0x9E3779B97F4A7C15L;
    z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
    z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
    return z ^ (z >>> 31);
  }

  /** Uniform values in (0, 1), fp64, for elements {@code [offset, offset + count)}, on {@code device}. */
  public Tensor uniform(long offset, long count, Device device) {
    return uniform(offset, count, device, 0);
  }

  /** Standard normal values, fp64, for elements {@code [offset, offset + count)}, on {@code device}. */
  public Tensor normal(long offset, long count, Device device) {
    Tensor u1 = uniform(offset, count, device, 1);
    Tensor u2 = uniform(offset, count, device, 2);
    return u1.log().mul(new Scalar(-2.0)).sqrt().mul(u2.mul(new Scalar(2 * Math.PI)).cos());
  }

  private Tensor uniform(long offset, long count, Device device, int lane) {
    TensorOptions longs = new TensorOptions().dtype(new ScalarTypeOptional(torch.ScalarType.Long))
        .device(new DeviceOptional(device));
    Tensor h = torch.arange(new Scalar(offset), new Scalar(offset + count), new Scalar(1), longs);
    Tensor high = h.bitwise_right_shift(new Scalar(32));
    long k0 = key & MASK32;
    long k1 = key >>> 32;
    long k2 = (k0 * 0x9E3779B1L + lane * 0x85EBCA77L) & MASK32;
    // In place where possible: a chunk's temporaries are then a few tensors, not dozens.
    mix(h.bitwise_and_(new Scalar(MASK32)).bitwise_xor_(new Scalar(k0)));
    mix(h.bitwise_xor_(high).bitwise_xor_(new Scalar(k1)));
    mix(h.bitwise_xor_(new Scalar(k2)));
    return h.to(torch.ScalarType.Double).add_(new Scalar(0.5)).div_(new Scalar(4294967296.0));
  }

  /** MurmurHash3's fmix32, in place, on int64 tensors holding values in [0, 2^32). */
  private static void mix(Tensor x) {
    x.bitwise_xor_(x.bitwise_right_shift(new Scalar(16)));
    multiply32(x, 0x85EBCA6BL);
    x.bitwise_xor_(x.bitwise_right_shift(new Scalar(13)));
    multiply32(x, 0xC2B2AE35L);
    x.bitwise_xor_(x.bitwise_right_shift(new Scalar(16)));
  }

  /** {@code x = x * c mod 2^32} in place for {@code x, c < 2^32}, in halves so no int64 product overflows. */
  private static void multiply32(Tensor x, long c) {
    Tensor lowPart = x.mul(new Scalar(c & 0xFFFF));
    x.mul_(new Scalar(c >>> 16)).bitwise_and_(new Scalar(0xFFFFL)).bitwise_left_shift_(new Scalar(16)).add_(lowPart)
        .bitwise_and_(new Scalar(MASK32));
  }
}
