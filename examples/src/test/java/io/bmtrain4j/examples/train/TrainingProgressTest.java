package io.bmtrain4j.examples.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The log form of the progress: a bounded number of plain lines, whatever the number of steps. */
class TrainingProgressTest {
  private static List<String> linesFor(int first, int steps) {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8);
        TrainingProgress progress = TrainingProgress.lines("train", first, steps, out)) {
      for (int step = first; step < steps; step++) {
        progress.update(step + 1, "loss " + step);
      }
    }
    return bytes.toString(StandardCharsets.UTF_8).lines().toList();
  }

  @Test
  void aLineAtEachTenthOfTheRunNoMatterHowManySteps() {
    for (int steps : new int[] {150, 10_000}) {
      List<String> lines = linesFor(0, steps);
      assertEquals(10, lines.size(), String.join("\n", lines));
      assertTrue(lines.get(0).startsWith("train " + steps / 10 + "/" + steps + " (10%)"), lines.get(0));
      assertTrue(lines.get(9).startsWith("train " + steps + "/" + steps + " (100%)"), lines.get(9));
      assertTrue(lines.get(9).endsWith("| loss " + (steps - 1)), lines.get(9));
    }
  }

  @Test
  void aResumedOrShortRunStillEndsWithItsLastStep() {
    List<String> resumed = linesFor(150, 160);
    assertEquals(10, resumed.size());
    assertTrue(resumed.get(9).startsWith("train 160/160 (100%)"), resumed.get(9));
    List<String> three = linesFor(0, 3);
    assertEquals(3, three.size(), String.join("\n", three));
  }
}
