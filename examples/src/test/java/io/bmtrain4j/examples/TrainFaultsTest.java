package io.bmtrain4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.launch.LaunchSpec;
import io.bmtrain4j.launch.LocalLauncher;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The training main against values and checkpoints that must stop a run: each ends in one named
 * error line, without a stack trace, and never moves {@code latest} to a bad checkpoint.
 */
class TrainFaultsTest {
  @TempDir Path dir;

  private record Run(int code, String output) {}

  /** One rank of the training main in a JVM of its own (through the launcher, which prefixes its lines). */
  private Run train(String... args) {
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    List<String> all = new ArrayList<>(List.of("--checkpoint-dir", dir.resolve("ck").toString(), "--warmup", "1"));
    all.addAll(List.of(args));
    int code = LocalLauncher.launch(LaunchSpec.of(1, Train.class.getName(), all.toArray(new String[0])).withOutput(lines::add));
    return new Run(code, String.join("\n", lines));
  }

  private String latest() throws IOException {
    return Files.readString(dir.resolve("ck/latest"), StandardCharsets.UTF_8).trim();
  }

  private static void assertNamedError(Run run, String expected) {
    assertEquals(1, run.code(), run.output());
    assertTrue(run.output().contains("train: error: "), run.output());
    assertTrue(run.output().contains(expected), () -> "expected '" + expected + "' in:\n" + run.output());
    assertFalse(run.output().contains("\tat "), () -> "no stack trace:\n" + run.output());
  }

  @Test
  void aDivergingRunStopsAtTheFirstNonFiniteStepAndKeepsTheGoodCheckpoint() throws IOException {
    assertEquals(0, train("--steps", "2").code());
    assertEquals("step-000000002", latest());
    Run diverged = train("--resume", "--steps", "8", "--lr", "1e12");
    assertNamedError(diverged, "stopping without a checkpoint");
    assertTrue(diverged.output().matches("(?s).*step \\d+: the loss is .*"), diverged.output());
    assertEquals("step-000000002", latest(), "latest still names the good checkpoint");
    try (var steps = Files.list(dir.resolve("ck"))) {
      assertEquals(1, steps.filter(p -> p.getFileName().toString().startsWith("step-")).count());
    }
  }

  @Test
  void continuingPastANonFiniteLossNeverSavesTheDivergedWeights() throws IOException {
    assertEquals(0, train("--steps", "2").code());
    Run kept = train("--resume", "--steps", "6", "--lr", "1e12", "--on-nonfinite", "continue");
    assertEquals(0, kept.code(), kept.output());
    assertTrue(kept.output().contains("not saved"), kept.output());
    assertEquals("step-000000002", latest(), "latest still names the good checkpoint");
  }

  @Test
  void resumingWithFewerStepsThanTheCheckpointRefusesAndKeepsLatest() throws IOException {
    assertEquals(0, train("--steps", "4").code());
    assertNamedError(train("--resume", "--steps", "2"), "--steps 2 is not beyond the checkpoint's step 4");
    assertEquals("step-000000004", latest());
    try (var steps = Files.list(dir.resolve("ck"))) {
      assertFalse(steps.anyMatch(p -> p.getFileName().toString().equals("step-000000002")), "no step-2 written");
    }
  }

  @Test
  void damagedCheckpointsAreRefusedNamingTheProblem() throws IOException {
    assertEquals(0, train("--steps", "2", "--checkpoint-every", "1", "--keep-last", "1").code());
    Path ck = dir.resolve("ck");
    try (var steps = Files.list(ck)) {
      assertEquals(List.of("step-000000002"), steps.map(p -> p.getFileName().toString()).filter(n -> n.startsWith("step-"))
          .sorted().toList(), "--keep-last 1 pruned step 1");
    }
    Path rankFile = ck.resolve("step-000000002/rank-0.safetensors");
    Path meta = ck.resolve("step-000000002/meta.json");
    String goodMeta = Files.readString(meta);

    // A flipped byte inside the data, the format intact.
    byte[] original = Files.readAllBytes(rankFile);
    try (RandomAccessFile f = new RandomAccessFile(rankFile.toFile(), "rw")) {
      f.seek(original.length - 5);
      f.write(original[original.length - 5] ^ 0x40);
    }
    assertNamedError(train("--resume", "--steps", "3"), "does not match the checksum");
    Files.write(rankFile, original);

    Files.writeString(meta, goodMeta.replaceFirst("\"step\" : 2", "\"step\" : \"four\""));
    assertNamedError(train("--resume", "--steps", "3"), "'step' must be a whole number");
    Files.writeString(meta, "{}");
    assertNamedError(train("--resume", "--steps", "3"), "'world_size' must be a whole number");
    Files.writeString(meta, goodMeta);

    Files.writeString(ck.resolve("latest"), "../../../etc");
    assertNamedError(train("--resume", "--steps", "3"), "which is not a step directory");
    Files.writeString(ck.resolve("latest"), "");
    assertNamedError(train("--resume", "--steps", "3"), "is empty");
    Files.writeString(ck.resolve("latest"), "step-000000002");
    assertEquals(0, train("--resume", "--steps", "3").code(), "the repaired checkpoint resumes");
  }

  @Test
  void aDtypeChangeOnResumeSaysSo() {
    assertEquals(0, train("--steps", "2").code());
    assertNamedError(train("--resume", "--steps", "3", "--dtype", "bf16"), "was saved as F32 and the model is BF16");
  }

  @Test
  void ranksThatBuildDifferentModelsFailNamingTheDifferenceNotWithANativeAbort() throws Exception {
    int port = io.bmtrain4j.testing.RanksAsThreads.freePort();
    List<Process> ranks = new ArrayList<>();
    List<Path> logs = new ArrayList<>();
    for (int rank = 0; rank < 2; rank++) {
      List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
          "-cp", System.getProperty("java.class.path"), Train.class.getName(), "--checkpoint-dir",
          dir.resolve("ck" + rank).toString(), "--steps", "2", "--timeout", "60"));
      if (rank == 1) {
        cmd.addAll(List.of("--seq", "64")); // a longer position embedding on this rank only
      }
      ProcessBuilder pb = new ProcessBuilder(cmd);
      pb.environment().remove("TORCHELASTIC_USE_AGENT_STORE");
      pb.environment().putAll(java.util.Map.of("RANK", String.valueOf(rank), "WORLD_SIZE", "2", "MASTER_ADDR", "127.0.0.1",
          "MASTER_PORT", String.valueOf(port)));
      Path log = dir.resolve("rank" + rank + ".log");
      logs.add(log);
      ranks.add(pb.redirectErrorStream(true).redirectOutput(log.toFile()).start());
    }
    for (int rank = 0; rank < 2; rank++) {
      Process p = ranks.get(rank);
      assertTrue(p.waitFor(120, java.util.concurrent.TimeUnit.SECONDS), Files.readString(logs.get(rank)));
      String out = Files.readString(logs.get(rank));
      assertEquals(1, p.exitValue(), out);
      assertTrue(out.contains("model differs from rank " + (1 - rank)), out);
      assertTrue(out.contains("positionEmbedding"), "names the first parameter that differs:\n" + out);
      assertFalse(out.contains("terminate called") || out.contains("SIGABRT"), out);
    }
  }
}
