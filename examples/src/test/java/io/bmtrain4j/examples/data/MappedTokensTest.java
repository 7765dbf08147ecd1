package io.bmtrain4j.examples.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.testing.TensorAsserts;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MappedTokensTest {
  @TempDir Path dir;

  private static float[] v(Tensor t) {
    return TensorAsserts.values(t);
  }

  @Test
  void textBytesGiveShiftedTargetsAndDifferentDeterministicWindowsPerRank() throws Exception {
    Path text = dir.resolve("t.txt");
    Files.writeString(text, "the quick brown fox jumps over the lazy dog. ".repeat(20), StandardCharsets.UTF_8);
    TokenSource s = TokenSource.open("text:" + text, 8, 1, 0);
    assertEquals(256, s.vocab());
    Tensor[] b = s.batch(3, 0, 2);
    float[] in = v(b[0]);
    float[] out = v(b[1]);
    for (int i = 0; i < 7; i++) {
      assertEquals(in[i + 1], out[i], "target is the next byte");
    }
    assertArrayEquals(in, v(s.batch(3, 0, 2)[0]), "same (step, rank): same window");
    assertNotEquals(java.util.Arrays.toString(in), java.util.Arrays.toString(v(s.batch(3, 1, 2)[0])), "ranks differ");
    assertTrue(s.decode(new long[] {'f', 'o', 'x'}).equals("fox"));
  }

  @Test
  void nanoGptBinIsReadAsUint16AndTokensOutsideTheVocabularyAreNamed() throws Exception {
    Path bin = dir.resolve("train.bin");
    int[] tokens = new int[100];
    for (int i = 0; i < tokens.length; i++) {
      tokens[i] = 60000 + i; // above 32767: uint16, not int16
    }
    MappedTokens.writeBin(bin, tokens);
    TokenSource s = TokenSource.open("bin:" + bin, 4, 0, 65536);
    float[] in = v(s.batch(0, 0, 1)[0]);
    assertTrue(in[0] >= 60000 && in[1] == in[0] + 1, java.util.Arrays.toString(in));
    TokenSource small = TokenSource.open("bin:" + bin, 4, 0, 50304);
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> small.batch(0, 0, 1));
    assertTrue(e.getMessage().contains("outside the vocabulary (50304)") && e.getMessage().contains("--vocab"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> TokenSource.open("csv:x", 4, 0, 1));
  }
}
