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
 * A token file, memory-mapped (never read whole): bytes of a text (vocabulary 256), nanoGPT's
 * {@code .bin} of little-endian uint16 tokens, or uint32 tokens for vocabularies beyond 65,536
 * (Llama 3's 128k; see {@link TokenFile}). Files of any size: mapped in 1 GiB windows, since one
 * mapping holds at most 2 GiB. Each sequence starts at an offset drawn from (seed, step, rank), so
 * ranks read different, reproducible windows.
 */
public final class MappedTokens implements TokenSource {
  /** How tokens are stored. */
  public enum Format {
    BYTES(1),
    UINT16(2),
    UINT32(4);

    final int width;

    Format(int width) {
      this.width = width;
    }
  }

  /** Bytes per mapping: a multiple of every token width, so no token straddles two. */
  static final long WINDOW = 1L << 30;

  private final MappedByteBuffer[] windows;
  private final Format format;
  private final long tokens;
  private final int vocab;
  private final int seq;
  private final long seed;

  public MappedTokens(Path file, Format format, int vocab, int seq, long seed) {
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      long size = ch.size();
      this.windows = new MappedByteBuffer[(int) ((size + WINDOW - 1) / WINDOW)];
      for (int w = 0; w < windows.length; w++) {
        windows[w] = ch.map(FileChannel.MapMode.READ_ONLY, w * WINDOW, Math.min(WINDOW, size - w * WINDOW));
        windows[w].order(ByteOrder.LITTLE_ENDIAN);
      }
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

  /** How many tokens the file holds. */
  public long size() {
    return tokens;
  }

  /** Token {@code i} of the file. */
  public long token(long i) {
    long at = i * format.width;
    MappedByteBuffer w = windows[(int) (at / WINDOW)];
    int in = (int) (at % WINDOW);
    long t = switch (format) {
      case BYTES -> Byte.toUnsignedLong(w.get(in));
      case UINT16 -> Short.toUnsignedLong(w.getShort(in));
      case UINT32 -> Integer.toUnsignedLong(w.getInt(in));
    };
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
