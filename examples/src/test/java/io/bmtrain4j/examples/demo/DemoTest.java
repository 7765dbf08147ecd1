package io.bmtrain4j.examples.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.examples.Train;
import io.bmtrain4j.launch.LaunchSpec;
import io.bmtrain4j.launch.LocalLauncher;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README's first command: the example trains on 2 ranks (2 JVMs through the local launcher),
 * learns (README: loss from about 2.8 to about 0.66 in 150 steps), writes the checkpoint and the
 * loss plot, prints a sample, and {@code --resume} continues from the checkpoint.
 */
class DemoTest {
  @TempDir Path dir;

  private List<String> run(String... args) {
    return runOn(2, args);
  }

  private List<String> runOn(int ranks, String... args) {
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    int code = LocalLauncher.launch(LaunchSpec.of(ranks, Train.class.getName(), args).withOutput(lines::add));
    assertEquals(0, code, String.join("\n", lines));
    return lines;
  }

  @Test
  void twoRanksLearnWriteCheckpointAndPlotAndResume() throws Exception {
    String ckpt = dir.resolve("ckpt").toString();
    List<String> out = run("--checkpoint-dir", ckpt);
    String all = String.join("\n", out);
    Matcher m = Pattern.compile("\\[rank 0\\] loss ([0-9.]+) -> ([0-9.]+) over steps 0..149").matcher(all);
    assertTrue(m.find(), all);
    double first = Double.parseDouble(m.group(1));
    double last = Double.parseDouble(m.group(2));
    assertTrue(first > 2.5, "starts near ln(16) = 2.77: " + first);
    assertTrue(last < 1.0, "learns to copy the pattern: final loss " + last);
    assertTrue(Files.size(dir.resolve("ckpt/loss.png")) > 10_000, "loss plot written");
    assertTrue(Files.readString(dir.resolve("ckpt/latest")).startsWith("step-"), "checkpoint written");
    assertTrue(all.contains("[rank 0] sample: prompt"), all);
    assertTrue(all.contains("[rank 0] train"), "progress bar on rank 0: " + all);
    assertTrue(!all.contains("[rank 1] train"), "no progress bar on other ranks");
    // Not a terminal (a list of lines): plain progress lines at each tenth of the run, not a redraw per second.
    long progressLines = out.stream().filter(l -> l.startsWith("[rank 0] train ")).count();
    assertTrue(progressLines >= 10 && progressLines <= 12, progressLines + " progress lines:\n" + all);
    assertTrue(all.contains("[rank 0] train 150/150 (100%)"), all);

    // Resume on ONE rank: the sharded checkpoint written by two is resharded.
    List<String> resumed = runOn(1, "--checkpoint-dir", ckpt, "--resume", "--steps", "160");
    String r = String.join("\n", resumed);
    assertTrue(r.contains("resumed from " + ckpt + " at step 150"), r);
    Matcher m2 = Pattern.compile("loss ([0-9.]+) -> ([0-9.]+) over steps 150..159").matcher(r);
    assertTrue(m2.find(), r);
    assertTrue(Double.parseDouble(m2.group(1)) < 1.0, "resumed training starts where it stopped: " + m2.group(1));
  }

  @Test
  void anActivationBudgetPrintsItsPlanAfterTheMeasuredStep() {
    String roomy = String.join("\n", run("--checkpoint-dir", dir.resolve("a").toString(), "--steps", "3",
        "--activation-budget", "90%"));
    assertTrue(roomy.contains("[rank 0] activation plan for [8, 32]: keep layers.0-3; keeps "), roomy);
    String tight = String.join("\n", run("--checkpoint-dir", dir.resolve("b").toString(), "--steps", "3",
        "--activation-budget", "1MiB"));
    assertTrue(tight.contains("[rank 0] activation plan for [8, 32]: recompute layers.0-3; keeps 0.0 MiB more"), tight);
    assertEquals(1, tight.lines().filter(l -> l.contains("activation plan")).count(), "printed once: " + tight);
  }
}
