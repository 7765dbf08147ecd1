package io.bmtrain4j.examples.data;

import org.bytedeco.pytorch.Tensor;

/**
 * Where training sequences come from. Every rank draws its own deterministic share of each step's
 * global batch: the same (seed, step, rank) always gives the same sequences.
 */
public interface TokenSource {
  /** The length of the synthetic task's repeated pattern. */
  int SYNTHETIC_PERIOD = 8;

  /** Inputs and next-token targets, each {@code [batch, seq]} int64, for this rank's share of {@code step}. */
  Tensor[] batch(int step, int rank, int batch);

  int vocab();

  /** Tokens as text, for printing samples. */
  String decode(long[] tokens);

  /** {@code values} as an int64 tensor {@code [batch, seq]} (a copy). */
  static Tensor tokens(long[] values, int batch, int seq) {
    return org.bytedeco.pytorch.global.torch.tensor(values).view(batch, seq);
  }

  /**
   * Opens {@code spec}: "synthetic" (the repeated-pattern task), "text:PATH" (bytes of a text
   * file, vocabulary 256), "bin:PATH" (nanoGPT's uint16 tokens, memory-mapped) or "tokens:PATH"
   * (a corpus {@code train prepare} tokenized, uint16 or uint32 as its {@code PATH.json} says).
   */
  static TokenSource open(String spec, int seq, long seed, int binVocab) {
    if (spec.equals("synthetic")) {
      return new RepeatedPatternTask(16, seq, SYNTHETIC_PERIOD, seed);
    }
    if (spec.startsWith("text:")) {
      return new MappedTokens(java.nio.file.Path.of(spec.substring(5)), MappedTokens.Format.BYTES, 256, seq, seed);
    }
    if (spec.startsWith("bin:")) {
      return new MappedTokens(java.nio.file.Path.of(spec.substring(4)), MappedTokens.Format.UINT16, binVocab, seq, seed);
    }
    if (spec.startsWith("tokens:")) {
      return TokenFile.open(java.nio.file.Path.of(spec.substring(7)), seq, seed);
    }
    throw new IllegalArgumentException("unknown data source '" + spec + "': use synthetic, text:PATH, bin:PATH or tokens:PATH");
  }

  /** Why {@code spec} cannot be opened (to follow "--data "), or null if it looks usable. */
  static String problem(String spec) {
    if (spec.equals("synthetic")) {
      return null;
    }
    String path;
    if (spec.startsWith("text:")) {
      path = spec.substring(5);
    } else if (spec.startsWith("bin:")) {
      path = spec.substring(4);
    } else if (spec.startsWith("tokens:")) {
      path = spec.substring(7);
      if (!java.nio.file.Files.isRegularFile(TokenFile.sidecar(java.nio.file.Path.of(path)))) {
        return "names " + path + ", which has no " + TokenFile.sidecar(java.nio.file.Path.of(path)).getFileName()
            + " beside it: tokens: reads files that 'train prepare' wrote (a nanoGPT .bin is bin:PATH)";
      }
    } else {
      return "must be synthetic, text:PATH, bin:PATH or tokens:PATH, got '" + spec + "'";
    }
    java.nio.file.Path p = java.nio.file.Path.of(path);
    if (!java.nio.file.Files.exists(p)) {
      return "names " + path + ", which does not exist";
    }
    if (!java.nio.file.Files.isRegularFile(p)) {
      return "names " + path + ", which is not a regular file" + (java.nio.file.Files.isDirectory(p) ? " but a directory" : "");
    }
    if (!java.nio.file.Files.isReadable(p)) {
      return "names " + path + ", which this user cannot read";
    }
    return null;
  }
}
