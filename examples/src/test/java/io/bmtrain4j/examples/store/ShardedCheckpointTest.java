package io.bmtrain4j.examples.store;

import static io.bmtrain4j.testing.TensorAsserts.assertClose;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.store.CheckpointException;
import io.bmtrain4j.examples.behaviour.ParityWorker;
import io.bmtrain4j.examples.behaviour.ShardedCheckpointRun;
import io.bmtrain4j.testing.RanksAsThreads;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Sharded checkpoints: resharding to other world sizes, crash safety, corrupt files. */
class ShardedCheckpointTest {
  @TempDir Path dir;

  @Test
  void savedAtWorldTwoResumesAtOneAndFourWithTheSameOutputsAndTraining() {
    Path ckpt = dir.resolve("ckpt");
    List<Object[]> two = RanksAsThreads.run(2, 0, Duration.ofSeconds(120), ctx -> {
      ShardedCheckpointRun run = new ShardedCheckpointRun();
      run.train(0, 3);
      run.save(ckpt, 3);
      float[] outputs = run.evalOutputs();
      return new Object[] {outputs, run.train(3, 6)};
    });
    float[] expectedOutputs = (float[]) two.get(0)[0];
    @SuppressWarnings("unchecked")
    List<Double> expectedLosses = (List<Double>) two.get(0)[1];
    for (int world : new int[] {1, 4}) {
      List<Object[]> got = RanksAsThreads.run(world, 0, Duration.ofSeconds(120), ctx -> {
        ShardedCheckpointRun run = new ShardedCheckpointRun();
        long step = run.load(ckpt);
        float[] outputs = run.evalOutputs();
        return new Object[] {step, outputs, run.train((int) step, 6)};
      });
      for (Object[] r : got) {
        assertEquals(3L, r[0]);
        assertClose("outputs after loading at world " + world, expectedOutputs, (float[]) r[1], 0, 0);
        @SuppressWarnings("unchecked")
        List<Double> losses = (List<Double>) r[2];
        for (int i = 0; i < expectedLosses.size(); i++) {
          // Adam moments, masters, step counts, schedule and loss scale all resumed: the same
          // training, up to the reduction order of another world size.
          assertEquals(expectedLosses.get(i), losses.get(i), 1e-4 * expectedLosses.get(i),
              "loss at step " + (3 + i) + " at world " + world);
        }
      }
    }
  }

  @Test
  void anAsynchronousSaveWrittenWhileTrainingGoesOnResumesBitForBit() {
    Path ckpt = dir.resolve("async");
    List<Object[]> first = RanksAsThreads.run(2, 0, Duration.ofSeconds(120), ctx -> {
      ShardedCheckpointRun run = new ShardedCheckpointRun();
      run.train(0, 3);
      io.bmtrain4j.store.ShardedCheckpoint.PendingSave pending = run.saveAsync(ckpt, 3);
      List<Double> after = run.train(3, 6); // changes every shard and moment while the files are written
      pending.await();
      return new Object[] {after};
    });
    List<Object[]> resumed = RanksAsThreads.run(2, 0, Duration.ofSeconds(120), ctx -> {
      ShardedCheckpointRun run = new ShardedCheckpointRun();
      long step = run.load(ckpt);
      return new Object[] {step, run.train((int) step, 6)};
    });
    for (int r = 0; r < 2; r++) {
      assertEquals(3L, resumed.get(r)[0]);
      assertEquals(first.get(r)[0], resumed.get(r)[1], "rank " + r + ": the same losses as the run that went on");
    }
  }

  @Test
  void aProcessKilledWhileAnAsynchronousSaveIsWrittenLeavesTheLastCompleteCheckpoint() throws Exception {
    assertKillingTheSaverLeavesStepThreeOrLater("save-forever-async"); // most likely while a background write is under way
  }

  @Test
  void aSaveRemovesWhatInterruptedSavesLeftAndKeepsTheNewestOnes() throws Exception {
    Path ckpt = dir.resolve("litter");
    Path unfinished = ckpt.resolve("step-000000099");
    Files.createDirectories(unfinished);
    Files.writeString(unfinished.resolve("rank-0.safetensors.tmp"), "cut short");
    RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      ShardedCheckpointRun run = new ShardedCheckpointRun();
      run.train(0, 1);
      for (long step = 1; step <= 3; step++) {
        io.bmtrain4j.store.ShardedCheckpoint.save(ckpt, run.net(), run.manager(), step, 2);
      }
      return null;
    });
    try (var entries = Files.list(ckpt)) {
      assertEquals(List.of("latest", "step-000000002", "step-000000003"),
          entries.map(p -> p.getFileName().toString()).sorted().toList(), "no litter, no .tmp, the newest two kept");
    }
    try (var files = Files.list(ckpt.resolve("step-000000003"))) {
      assertEquals(List.of("meta.json", "rank-0.safetensors", "rank-1.safetensors"),
          files.map(p -> p.getFileName().toString()).sorted().toList(), "only the checkpoint's own files");
    }

    // Resumed from step 2 (say step 3 went bad): saving step 2 again with keepLast 1 replaces
    // step 2 and keeps the newer step 3, which a user may still want to look at.
    RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      ShardedCheckpointRun run = new ShardedCheckpointRun();
      io.bmtrain4j.store.ShardedCheckpoint.save(ckpt, run.net(), run.manager(), 2, 1);
      return null;
    });
    try (var entries = Files.list(ckpt)) {
      assertEquals(List.of("latest", "step-000000002", "step-000000003"),
          entries.map(p -> p.getFileName().toString()).sorted().toList(), "newer checkpoints are never pruned");
    }
    assertEquals("step-000000002", Files.readString(ckpt.resolve("latest")).trim());
    assertEquals(2L, (long) RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> new ShardedCheckpointRun().load(ckpt)).get(0));
  }

  @Test
  void aCheckpointWithNonFiniteWeightsIsNotResumed() {
    Path ckpt = dir.resolve("nan");
    RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      ShardedCheckpointRun run = new ShardedCheckpointRun();
      run.train(0, 1);
      run.poison();
      run.save(ckpt, 1);
      return null;
    });
    CheckpointException e = assertThrows(CheckpointException.class, () -> RanksAsThreads.run(1, 0, Duration.ofSeconds(60),
        ctx -> new ShardedCheckpointRun().load(ckpt)));
    assertTrue(e.getMessage().contains("holds NaN or infinite values"), e.getMessage());
    assertTrue(e.getMessage().contains(ckpt.resolve("latest").toString()), "says which file to edit: " + e.getMessage());
  }

  @Test
  void aProcessKilledMidSaveLeavesTheLastCompleteCheckpoint() throws Exception {
    assertKillingTheSaverLeavesStepThreeOrLater("save-forever"); // at an arbitrary point of a save
  }

  /**
   * Starts a JVM saving checkpoints 1, 2, 3, ... ({@link ParityWorker} {@code mode}), SIGKILLs it
   * once step 3 is saved, and checks that the directory still loads, at step 3 or later.
   */
  private void assertKillingTheSaverLeavesStepThreeOrLater(String mode) throws Exception {
    Path ckpt = dir.resolve(mode);
    Path log = dir.resolve(mode + ".log");
    ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", System.getProperty("java.class.path"), ParityWorker.class.getName(), mode, ckpt.toString());
    pb.redirectErrorStream(true).redirectOutput(log.toFile());
    Process p = pb.start();
    long deadline = System.nanoTime() + 60_000_000_000L;
    while (System.nanoTime() < deadline && !(Files.exists(log) && Files.readString(log).contains("saved 3"))) {
      Thread.sleep(50);
    }
    assertTrue(Files.readString(log).contains("saved 3"), Files.readString(log));
    p.destroyForcibly().waitFor();
    long step = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> new ShardedCheckpointRun().load(ckpt)).get(0);
    assertTrue(step >= 3, "loaded step " + step);
  }

  @Test
  void missingMetadataAndTruncatedFilesAreReported() throws Exception {
    Path ckpt = dir.resolve("ckpt");
    RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      ShardedCheckpointRun run = new ShardedCheckpointRun();
      run.train(0, 1);
      run.save(ckpt, 1);
      return null;
    });
    Path stepDir = ckpt.resolve("step-000000001");
    byte[] rank1 = Files.readAllBytes(stepDir.resolve("rank-1.safetensors"));
    Files.write(stepDir.resolve("rank-1.safetensors"), java.util.Arrays.copyOf(rank1, rank1.length / 2));
    String truncated = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx ->
        assertThrows(CheckpointException.class, () -> new ShardedCheckpointRun().load(ckpt)).getMessage()).get(0);
    assertTrue(truncated.contains("rank-1.safetensors") && (truncated.contains("truncated") || truncated.contains("corrupt")), truncated);
    Files.delete(stepDir.resolve("meta.json"));
    String incomplete = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx ->
        assertThrows(CheckpointException.class, () -> new ShardedCheckpointRun().load(ckpt)).getMessage()).get(0);
    assertTrue(incomplete.contains("incomplete"), incomplete);
    Map<String, String> none = Map.of();
    assertTrue(none.isEmpty());
  }
}
