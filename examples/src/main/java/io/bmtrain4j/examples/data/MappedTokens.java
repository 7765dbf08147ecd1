package io.bmtrain4j.examples.data;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;
import org.bytedeco.pytorch.Tensor;

/**
 * A token file, memory-mapped (never read whole): bytes of a text (vocabulary 256), or nanoGPT's
 * {@code .bin} of little-endian uint16 tokens. Each sequence starts at an offset drawn from
 * (seed, step, rank), so ranks read different, reproducible windows.
 */
public final class MappedTokens implements TokenSource {
  /** How tokens are stored. */
  public enum Format {
    BYTES(1),
    UINT16(2);

    final int width;

    Format(int width) {
      this.width = width;
    }
  }

  private final MappedByteBuffer map;
  private final Format format;
  private final long tokens;
  private final int vocab;
  private final int seq;
  private final long seed;

  public MappedTokens(Path file, Format format, int vocab, int seq, long seed) {
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      long size = ch.size();
      if (size > Integer.MAX_VALUE) {
        throw new IllegalArgumentException(file + " is larger than 2 GiB: split it (one mapping holds 2 GiB)");
      }
      this.map = ch.map(FileChannel.MapMode.READ_ONLY, 0, size);
      this.map.order(ByteOrder.LITTLE_ENDIAN);
      this.tokens = size / format.width;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot map " + file, e);
    }
    if (tokens < seq + 1) {
      throw new IllegalArgumentException(file + " holds " + tokens + " tokens, fewer than one sequence of " + (seq + 1));
    }
    this.format = format;
    this.vocab = vocab;
    this.seq = seq;
    this.seed = seed;
  }

  private long token(long i) {
    long t = format == Format.BYTES ? Byte.toUnsignedLong(map.get((int) i)) : Short.toUnsignedLong(map.getShort((int) (2 * i)));
    if (t >= vocab) {
      throw new IllegalStateException("token " + t + " at position " + i + " is outside the vocabulary (" + vocab
          + "): pass the right --vocab for this .bin");
    }
    return t;
  }

  @Override
  public Tensor[] batch(int step, int rank, int batch) {
    Random r = new Random(seed * 1_000_003L + step * 7919L + rank);
    long[] in = new long[batch * seq];
    long[] out = new long[batch * seq];
    for (int b = 0; b < batch; b++) {
      long start = (long) (r.nextDouble() * (tokens - seq - 1));
      for (int i = 0; i < seq; i++) {
        in[b * seq + i] = token(start + i);
        out[b * seq + i] = token(start + i + 1);
      }
    }
    return new Tensor[] {TokenSource.tokens(in, batch, seq), TokenSource.tokens(out, batch, seq)};
  }

  @Override
  public int vocab() {
    return vocab;
  }

  @Override
  public String decode(long[] ids) {
    if (format == Format.BYTES) {
      byte[] b = new byte[ids.length];
      for (int i = 0; i < ids.length; i++) {
        b[i] = (byte) ids[i];
      }
      return new String(b, StandardCharsets.UTF_8);
    }
    return java.util.Arrays.toString(ids);
  }

  /** Writes {@code tokens} as a nanoGPT {@code .bin} (uint16, little-endian). */
  public static void writeBin(Path file, int[] tokens) throws IOException {
    java.nio.ByteBuffer buf = java.nio.ByteBuffer.allocate(2 * tokens.length).order(ByteOrder.LITTLE_ENDIAN);
    for (int t : tokens) {
      buf.putShort((short) t);
    }
    Files.write(file, buf.array());
  }
}
