package io.bmtrain4j.examples.data;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * A model's own tokenizer, read from the {@code tokenizer.json} of a Hugging Face model directory
 * through DJL's binding of the {@code tokenizers} library (the same Rust code {@code transformers}
 * runs), so ids match Python's exactly.
 */
public final class TextTokenizer implements AutoCloseable {
  static {
    // DJL logs its platform probing (a GPU count it cannot read on CPU machines, the native it
    // found) at INFO and WARN on every rank; only its errors concern a user here.
    if (System.getProperty("org.slf4j.simpleLogger.log.ai.djl") == null) {
      System.setProperty("org.slf4j.simpleLogger.log.ai.djl", "error");
    }
  }

  private final HuggingFaceTokenizer tokenizer;
  private final Path file;
  private final long vocab;

  private TextTokenizer(HuggingFaceTokenizer tokenizer, Path file, long vocab) {
    this.tokenizer = tokenizer;
    this.file = file;
    this.vocab = vocab;
  }

  /** {@code path}: a {@code tokenizer.json}, or a directory holding one. */
  public static TextTokenizer open(Path path) {
    Path file = Files.isDirectory(path) ? path.resolve("tokenizer.json") : path;
    if (!Files.isRegularFile(file)) {
      throw new IllegalArgumentException("no tokenizer at " + file + ": give a tokenizer.json, or a Hugging Face model directory holding one");
    }
    try {
      // Whole texts, as they are: no truncation, no padding, no special tokens added.
      HuggingFaceTokenizer t = HuggingFaceTokenizer.newInstance(file,
          Map.of("truncation", "false", "padding", "false", "addSpecialTokens", "false"));
      return new TextTokenizer(t, file, vocabularyOf(file));
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the tokenizer " + file, e);
    }
  }

  /** One more than the largest id in the model's vocabulary and added tokens. */
  static long vocabularyOf(Path file) throws IOException {
    JsonNode root = new ObjectMapper().readTree(file.toFile());
    long max = -1;
    for (JsonNode id : root.path("model").path("vocab")) {
      max = Math.max(max, id.asLong());
    }
    for (JsonNode added : root.path("added_tokens")) {
      max = Math.max(max, added.path("id").asLong());
    }
    if (max < 0) {
      throw new IllegalArgumentException(file + " has no vocabulary (model.vocab): is it a tokenizer.json?");
    }
    return max + 1;
  }

  public long[] encode(String text) {
    return tokenizer.encode(text, false, false).getIds();
  }

  public String decode(long[] ids) {
    return tokenizer.decode(ids, false);
  }

  public long vocab() {
    return vocab;
  }

  public Path file() {
    return file;
  }

  @Override
  public void close() {
    tokenizer.close();
  }
}
