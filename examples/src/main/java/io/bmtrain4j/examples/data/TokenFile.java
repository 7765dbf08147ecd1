package io.bmtrain4j.examples.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * A tokenized corpus as {@code prepare} writes it: the tokens, little-endian, uint16 when the
 * vocabulary fits (as nanoGPT's {@code .bin}) and uint32 otherwise (Llama 3's 128k), and next to
 * them {@code FILE.json} saying which, with the vocabulary and the tokenizer used.
 */
public final class TokenFile {
  private static final ObjectMapper JSON = new ObjectMapper();

  private TokenFile() {}

  /** The width a vocabulary needs. */
  public static MappedTokens.Format formatFor(long vocab) {
    return vocab <= 65_536 ? MappedTokens.Format.UINT16 : MappedTokens.Format.UINT32;
  }

  static Path sidecar(Path file) {
    return file.resolveSibling(file.getFileName() + ".json");
  }

  /** Opens a file {@link Writer} wrote, for training windows of {@code seq} tokens. */
  public static MappedTokens open(Path file, int seq, long seed) {
    Path meta = sidecar(file);
    JsonNode m;
    try {
      m = JSON.readTree(meta.toFile());
    } catch (IOException e) {
      throw new IllegalArgumentException("cannot read " + meta + ", which says how " + file + " is stored: "
          + e.getMessage() + " (files written by 'train prepare' have one; a nanoGPT .bin is bin:PATH)", e);
    }
    MappedTokens.Format format = MappedTokens.Format.valueOf(m.path("format").asText("?").toUpperCase(java.util.Locale.ROOT));
    return new MappedTokens(file, format, m.path("vocab").asInt(), seq, seed);
  }

  /** Streams tokens into a file, then writes its description; the file appears complete or not at all. */
  public static final class Writer implements AutoCloseable {
    private final Path file;
    private final Path partial;
    private final long vocab;
    private final String tokenizer;
    private final MappedTokens.Format format;
    private final OutputStream out;
    private final byte[] buffer = new byte[4];
    private long written;
    private boolean committed;

    public Writer(Path file, long vocab, String tokenizer) throws IOException {
      this.file = file;
      this.partial = file.resolveSibling(file.getFileName() + ".partial");
      this.vocab = vocab;
      this.tokenizer = tokenizer;
      this.format = formatFor(vocab);
      this.out = new BufferedOutputStream(Files.newOutputStream(partial), 1 << 20);
    }

    public void append(long[] ids) throws IOException {
      for (long id : ids) {
        if (id < 0 || id >= vocab) {
          throw new IllegalArgumentException("token id " + id + " is outside the vocabulary of " + vocab);
        }
        for (int b = 0; b < format.width; b++) {
          buffer[b] = (byte) (id >>> (8 * b));
        }
        out.write(buffer, 0, format.width);
      }
      written += ids.length;
    }

    public long tokens() {
      return written;
    }

    public MappedTokens.Format format() {
      return format;
    }

    /** Every token is in: the file and its description appear when the writer closes. */
    public void commit() {
      committed = true;
    }

    /** Publishes the file if {@link #commit()} was called; otherwise (an error on the way) removes what was written. */
    @Override
    public void close() throws IOException {
      out.close();
      if (!committed) {
        Files.deleteIfExists(partial);
        return;
      }
      Files.move(partial, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      ObjectNode m = JSON.createObjectNode();
      m.put("format", format.name().toLowerCase(java.util.Locale.ROOT));
      m.put("vocab", vocab);
      m.put("tokens", written);
      m.put("tokenizer", tokenizer);
      try {
        Files.write(sidecar(file), JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(m));
      } catch (IOException e) {
        throw new UncheckedIOException("cannot write " + sidecar(file), e);
      }
    }
  }
}
