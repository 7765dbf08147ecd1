package io.bmtrain4j.examples.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.bmtrain4j.examples.PythonReference;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The model's own tokenizer in Java gives the ids Hugging Face {@code tokenizers} gives in Python;
 * {@code train prepare} writes them into a token file the training reader reads back, uint16 or
 * uint32 as the vocabulary needs, at any file size.
 */
class TokenizationTest {
  @TempDir Path dir;

  private static final String CORPUS = String.join("\n",
      "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs on.",
      "Über café naïve – 東京 🙂 tabs\tand  double  spaces, and a line that ends in spaces   ",
      "numbers 1234567 and 3.14159, punctuation!? (brackets) [more] {and more} \"quotes\" 'single'",
      "",
      "A blank line above; code below:",
      "    for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }",
      "The end.") + "\n";

  private JsonNode reference() throws Exception {
    Path corpus = dir.resolve("corpus.txt");
    Files.writeString(corpus, CORPUS);
    Path out = dir.resolve("ids.json");
    PythonReference.run("tokenizer_reference.py", "make", dir.toString(), corpus.toString(), out.toString());
    return new ObjectMapper().readTree(out.toFile());
  }

  private static long[] longs(JsonNode ids) {
    long[] out = new long[ids.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = ids.get(i).asLong();
    }
    return out;
  }

  @Test
  void idsAreThoseOfHuggingFaceTokenizers() throws Exception {
    JsonNode expected = reference();
    try (TextTokenizer tok = TextTokenizer.open(dir)) {
      assertEquals(expected.get("vocab").asLong(), tok.vocab());
      List<String> lines = CORPUS.lines().toList();
      for (int i = 0; i < lines.size(); i++) {
        assertArrayEquals(longs(expected.get("lines").get(i)), tok.encode(lines.get(i)), "line " + i + ": " + lines.get(i));
      }
      long[] whole = tok.encode(CORPUS);
      assertArrayEquals(longs(expected.get("whole")), whole);
      assertEquals(CORPUS, tok.decode(whole), "byte-level BPE decodes back to the text");
    }
  }

  @Test
  void prepareWritesTheTokensTheTrainingReaderReads() throws Exception {
    JsonNode expected = reference();
    Path corpus = dir.resolve("corpus.txt");
    Path tokens = dir.resolve("corpus.tokens");
    int exit = new picocli.CommandLine(new Prepare()).execute("--tokenizer", dir.toString(), "--input", corpus.toString(),
        "--output", tokens.toString());
    assertEquals(0, exit);
    long[] want = longs(expected.get("whole"));
    MappedTokens read = TokenFile.open(tokens, 4, 0);
    assertEquals(want.length, read.size());
    assertEquals(MappedTokens.Format.UINT16, TokenFile.formatFor(read.vocab()));
    for (int i = 0; i < want.length; i++) {
      assertEquals(want[i], read.token(i), "token " + i);
    }
    assertEquals(2 * want.length, Files.size(tokens), "uint16: two bytes a token");
  }

  @Test
  void aVocabularyBeyondUint16IsStoredAsUint32() throws Exception {
    Path file = dir.resolve("big-vocab.tokens");
    long[] ids = {0, 65_535, 65_536, 128_255, 7};
    try (TokenFile.Writer w = new TokenFile.Writer(file, 128_256, "llama3")) {
      w.append(ids);
      w.commit();
    }
    assertEquals(4L * ids.length, Files.size(file));
    MappedTokens read = TokenFile.open(file, 2, 0);
    for (int i = 0; i < ids.length; i++) {
      assertEquals(ids[i], read.token(i));
    }
  }

  @Test
  void aPreparationThatFailsLeavesNoTokenFile() throws Exception {
    Path file = dir.resolve("broken.tokens");
    try (TokenFile.Writer w = new TokenFile.Writer(file, 100, "tiny")) {
      w.append(new long[] {1, 2, 3});
      w.append(new long[] {4, 100}); // outside the vocabulary
      w.commit();
    } catch (IllegalArgumentException expected) {
      assertTrue(expected.getMessage().contains("100"), expected.getMessage());
    }
    assertTrue(!Files.exists(file) && !Files.exists(dir.resolve("broken.tokens.json"))
        && !Files.exists(dir.resolve("broken.tokens.partial")), "complete or not at all");
  }

  @Test
  void filesAboveTwoGibibytesAreRead() throws Exception {
    Path file = dir.resolve("huge.tokens");
    long tokens = (5L << 30) / 4 / 2; // 2.5 GiB of uint32: sparse, so it costs no disk
    long late = tokens - 3; // past the 2 GiB a single mapping could hold
    try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
      raf.setLength(tokens * 4);
      raf.seek(late * 4);
      raf.write(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, 99_999).array());
    }
    Files.writeString(dir.resolve("huge.tokens.json"), "{\"format\": \"uint32\", \"vocab\": 128256}");
    MappedTokens read = TokenFile.open(file, 8, 0);
    assertEquals(tokens, read.size());
    assertTrue(late * 4 > Integer.MAX_VALUE);
    assertEquals(99_999, read.token(late));
    assertEquals(0, read.token(late - 1));
  }
}
