package io.bmtrain4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * Bad options of the training main are usage errors: exit 2 and one line that names the option,
 * no stack trace, and nothing started (no rank, no rendezvous, no training).
 */
class TrainOptionsTest {
  @TempDir Path dir;

  private record Outcome(int code, String err) {}

  /** The training main in this JVM, with a checkpoint directory under the test's own unless {@code args} name one. */
  private Outcome train(String... args) {
    List<String> all = new ArrayList<>(List.of(args));
    if (!all.contains("--checkpoint-dir")) {
      all.addAll(List.of("--checkpoint-dir", dir.resolve("ck").toString()));
    }
    StringWriter err = new StringWriter();
    CommandLine cl = Train.commandLine(new Train());
    cl.setErr(new PrintWriter(err, true));
    cl.setOut(new PrintWriter(new StringWriter(), true));
    return new Outcome(cl.execute(all.toArray(new String[0])), err.toString());
  }

  private String[] rejected(String option, String... args) {
    Outcome run = train(args);
    String text = run.err();
    assertEquals(2, run.code(), () -> String.join(" ", args) + ":\n" + text);
    assertTrue(text.contains(option), () -> "names " + option + ": " + text);
    assertFalse(text.contains("\tat "), () -> "no stack trace: " + text);
    assertTrue(text.lines().count() <= 2, () -> "one line and a hint: " + text);
    return text.lines().toArray(String[]::new);
  }

  @Test
  void numbersOutsideTheirRangeNameTheirOption() {
    rejected("--micro-batch", "--micro-batch", "0");
    rejected("--micro-batch", "--micro-batch", "-2");
    rejected("--grad-accum", "--grad-accum", "0");
    rejected("--nproc", "--nproc", "-1");
    rejected("--checkpoint-every", "--checkpoint-every", "-1");
    rejected("--steps", "--steps", "0");
    rejected("--steps", "--steps", "-5");
    rejected("--seq", "--seq", "0");
    rejected("--seq", "--seq", "4");
    rejected("--lr", "--lr", "NaN");
    rejected("--lr", "--lr", "-0.1");
    rejected("--timeout", "--timeout", "0");
    rejected("--keep-last", "--keep-last", "-1");
    rejected("--dropout", "--dropout", "1.5");
    String[] warmup = rejected("--warmup", "--steps", "3", "--warmup", "5");
    assertTrue(warmup[0].contains("--steps (3)"), warmup[0]);
  }

  @Test
  void namesThatDoNotExistNameTheirOption() {
    rejected("--model", "--model", "huge");
    rejected("--dtype", "--dtype", "fp8");
    rejected("--device", "--device", "tpu");
    rejected("--lr-schedule", "--lr-schedule", "sawtooth");
    rejected("--on-nonfinite", "--on-nonfinite", "ignore");
    rejected("--data", "--data", "parquet:x");
    rejected("--arch", "--arch", "mamba");
    rejected("--model", "--arch", "llama", "--model", "1.3b"); // a GPT preset
    rejected("--loss-chunk", "--loss-chunk", "8"); // LLaMA only
    rejected("--loss-chunk", "--arch", "llama", "--loss-chunk", "-3");
    rejected("--hf-model", "--hf-model", "/tmp"); // LLaMA only
    rejected("--hf-model", "--arch", "llama", "--hf-model", "/no/such/dir");
    rejected("--dropout", "--arch", "llama", "--dropout", "0.1");
    rejected("--activation-budget", "--activation-budget", "lots");
    rejected("--activation-budget", "--activation-budget", "150%");
  }

  @Test
  void pathsAreCheckedBeforeTraining() throws IOException {
    String[] notADir = rejected("--data", "--data", "text:" + dir);
    assertTrue(notADir[0].contains("directory"), notADir[0]);
    rejected("--data", "--data", "bin:" + dir.resolve("missing.bin"));
    Path file = Files.writeString(dir.resolve("a-file"), "x");
    String[] ckpt = rejected("--checkpoint-dir", "--checkpoint-dir", file.toString());
    assertTrue(ckpt[0].contains("is a file, not a directory"), ckpt[0]);
    String[] nothing = rejected("--checkpoint-dir", "--checkpoint-dir", dir.resolve("empty").toString(), "--resume");
    assertTrue(nothing[0].contains("no checkpoint to --resume from"), nothing[0]);
  }

  @Test
  void cudaOnTheCpuBuildSaysHowToGetTheCudaNatives() {
    Outcome run = train("--device", "cuda");
    assertEquals(1, run.code(), run.err());
    assertTrue(run.err().contains("this build has the CPU natives only: build with 'mvn -P gpu install'"), run.err());
    assertFalse(run.err().contains("\tat "), run.err());
  }
}
