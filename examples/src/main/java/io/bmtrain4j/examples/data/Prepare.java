package io.bmtrain4j.examples.data;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code train prepare}: a text corpus into a token file for {@code --data tokens:PATH}, with the
 * model's own tokenizer, nanoGPT-style: uint16 when the vocabulary fits, uint32 otherwise.
 */
@Command(name = "prepare", mixinStandardHelpOptions = true,
    description = "Tokenizes a text corpus into a token file for --data tokens:PATH.")
public final class Prepare implements Callable<Integer> {
  @Option(names = "--tokenizer", required = true, description = "tokenizer.json, or a Hugging Face model directory holding one")
  Path tokenizer;

  @Option(names = "--input", required = true, description = "the corpus: a UTF-8 text file")
  Path input;

  @Option(names = "--output", required = true, description = "the token file to write (its description goes to OUTPUT.json)")
  Path output;

  /** Lines encoded per call: long enough to keep the tokenizer busy, short enough to show progress. */
  private static final int CHUNK_CHARS = 1 << 20;

  @Override
  public Integer call() throws IOException {
    if (!Files.isRegularFile(input)) {
      throw new IllegalArgumentException("--input " + input + " is not a file");
    }
    long bytes = Files.size(input);
    try (TextTokenizer tok = TextTokenizer.open(tokenizer);
        TokenFile.Writer out = new TokenFile.Writer(output, tok.vocab(), tok.file().toString());
        BufferedReader in = Files.newBufferedReader(input, StandardCharsets.UTF_8);
        ProgressBar bar = new ProgressBarBuilder().setTaskName("tokenize").setInitialMax(bytes).setUnit(" MB", 1 << 20)
            .setStyle(ProgressBarStyle.ASCII).setUpdateIntervalMillis(500).build()) {
      StringBuilder chunk = new StringBuilder();
      String line;
      while ((line = in.readLine()) != null) {
        chunk.append(line).append('\n');
        if (chunk.length() >= CHUNK_CHARS) {
          flush(tok, out, chunk, bar);
        }
      }
      flush(tok, out, chunk, bar);
      out.commit();
      bar.stepTo(bytes);
      System.out.printf("%,d tokens (%s, vocabulary %,d) -> %s%n", out.tokens(), out.format().name().toLowerCase(), tok.vocab(), output);
    }
    return 0;
  }

  private static void flush(TextTokenizer tok, TokenFile.Writer out, StringBuilder chunk, ProgressBar bar) throws IOException {
    if (chunk.length() > 0) {
      out.append(tok.encode(chunk.toString()));
      bar.stepBy(chunk.toString().getBytes(StandardCharsets.UTF_8).length);
      chunk.setLength(0);
    }
  }
}
