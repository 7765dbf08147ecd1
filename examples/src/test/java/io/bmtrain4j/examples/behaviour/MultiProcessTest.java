package io.bmtrain4j.examples.behaviour;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.testing.RanksAsThreads;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Ranks as separate JVMs, started with torchrun's environment variables. */
class MultiProcessTest {
  @TempDir Path logs;

  /** Starts {@code world} JVMs running {@link ParityWorker} {@code mode}; returns exit codes and outputs. */
  private List<Object[]> launch(int world, String mode, long timeoutSeconds) throws IOException, InterruptedException {
    return launch(world, List.of(mode), timeoutSeconds);
  }

  private List<Object[]> launch(int world, List<String> modeAndArgs, long timeoutSeconds) throws IOException, InterruptedException {
    String mode = String.join("-", modeAndArgs.subList(0, Math.min(2, modeAndArgs.size())));
    int port = RanksAsThreads.freePort();
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    List<Process> procs = new ArrayList<>();
    List<Path> outs = new ArrayList<>();
    for (int rank = 0; rank < world; rank++) {
      Path out = logs.resolve(mode + "-rank" + rank + ".log");
      List<String> command = new ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"),
          ParityWorker.class.getName()));
      command.addAll(modeAndArgs);
      ProcessBuilder pb = new ProcessBuilder(command);
      Map<String, String> env = pb.environment();
      env.put("RANK", String.valueOf(rank));
      env.put("WORLD_SIZE", String.valueOf(world));
      env.put("LOCAL_RANK", String.valueOf(rank));
      env.put("LOCAL_WORLD_SIZE", String.valueOf(world));
      env.put("GROUP_RANK", "0");
      env.put("MASTER_ADDR", "127.0.0.1");
      env.put("MASTER_PORT", String.valueOf(port));
      pb.redirectErrorStream(true).redirectOutput(out.toFile());
      procs.add(pb.start());
      outs.add(out);
    }
    List<Object[]> results = new ArrayList<>();
    for (int rank = 0; rank < world; rank++) {
      Process p = procs.get(rank);
      if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
        procs.forEach(Process::destroyForcibly);
        throw new AssertionError("rank " + rank + " still running after " + timeoutSeconds + " s:\n" + Files.readString(outs.get(rank)));
      }
      results.add(new Object[] {p.exitValue(), Files.readString(outs.get(rank), StandardCharsets.UTF_8)});
    }
    return results;
  }

  @Test
  void twoJvmsTrainLikeThePlainModel() throws Exception {
    for (Object[] r : launch(2, "parity", 120)) {
      assertEquals(0, r[0], (String) r[1]);
      assertTrue(((String) r[1]).contains(" OK"), (String) r[1]);
    }
  }

  @Test
  void dropoutMasksAreRecomputedExactlyInSeparateProcesses() throws Exception {
    for (Object[] r : launch(2, "dropout", 120)) {
      assertEquals(0, r[0], (String) r[1]);
    }
  }

  @Test
  void resumingInAFreshProcessContinuesBitForBit() throws Exception {
    String dir = logs.toString();
    for (String phase : List.of("full", "first", "second")) {
      for (Object[] r : launch(2, List.of("resume", phase, dir), 120)) {
        assertEquals(0, r[0], phase + ":\n" + r[1]);
      }
    }
    Map<String, org.bytedeco.pytorch.Tensor> full = io.bmtrain4j.optim.StateDicts.load(logs.resolve("full.params"));
    Map<String, org.bytedeco.pytorch.Tensor> resumed = io.bmtrain4j.optim.StateDicts.load(logs.resolve("second.params"));
    assertEquals(full.keySet(), resumed.keySet());
    full.forEach((k, v) -> assertTrue(org.bytedeco.pytorch.global.torch.equal(v, resumed.get(k)), "parameter " + k + " differs after resume"));
  }

  @Test
  void aRankThatDiesMidTrainingMakesTheSurvivorFailNamingTheCollective() throws Exception {
    long t0 = System.nanoTime();
    List<Object[]> results = launch(2, "die", 90);
    double seconds = (System.nanoTime() - t0) / 1e9;
    String survivor = (String) results.get(0)[1];
    assertEquals(3, results.get(1)[0], (String) results.get(1)[1]);
    assertEquals(1, results.get(0)[0], survivor);
    assertTrue(survivor.contains("failed on rank 0 of 2"), survivor);
    assertTrue(seconds < 60, "took " + seconds + " s");
  }
}
