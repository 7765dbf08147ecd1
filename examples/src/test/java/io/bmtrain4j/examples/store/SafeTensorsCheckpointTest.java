package io.bmtrain4j.examples.store;

import static io.bmtrain4j.testing.TensorAsserts.assertClose;
import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.store.CheckpointException;
import io.bmtrain4j.examples.behaviour.CheckpointModels;
import io.bmtrain4j.testing.RanksAsThreads;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Whole-model safetensors checkpoints: any world size, an independent reader, clear errors. */
class SafeTensorsCheckpointTest {
  @TempDir Path dir;

  /** Saves a trained-for-2-steps model at world 2; returns the plain outputs it computes. */
  private float[] saveAtWorldTwo(Path file) {
    return RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      Object net = CheckpointModels.trained(2, ctx.rank());
      Bmt.save(net, file);
      return CheckpointModels.evalOutputs(net);
    }).get(0);
  }

  @Test
  void saveCreatesMissingParentDirectoriesAndLeavesNoTemporaryFile() throws IOException {
    Path file = dir.resolve("not/yet/there/model.safetensors");
    float[] expected = saveAtWorldTwo(file);
    assertTrue(Files.isRegularFile(file), "the file was written under directories the save created");
    try (var listing = Files.list(file.getParent())) {
      assertEquals(List.of(file), listing.toList(), "only the file itself, no .tmp left");
    }
    float[] loaded = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      Object net = CheckpointModels.fresh(0);
      Bmt.load(net, file, true);
      return CheckpointModels.evalOutputs(net);
    }).get(0);
    assertClose("outputs after the round trip", expected, loaded, 0, 0);
  }

  @Test
  void aFileRankZeroCannotWriteFailsEveryRankByNameAndKeepsTheOldFile() throws IOException {
    Path file = dir.resolve("model.safetensors");
    saveAtWorldTwo(file);
    byte[] before = Files.readAllBytes(file);
    Path blocked = dir.resolve("a-file");
    Files.writeString(blocked, "not a directory");
    long start = System.nanoTime();
    List<String> messages = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      Object net = CheckpointModels.trained(2, ctx.rank());
      String message = assertThrows(io.bmtrain4j.store.CheckpointException.class,
          () -> Bmt.save(net, blocked.resolve("model.safetensors"))).getMessage();
      // A failed save on rank 0 leaves the ranks able to save again: none is stuck in a collective.
      Bmt.save(net, file);
      return message;
    });
    for (String m : messages) {
      assertTrue(m.contains(blocked.resolve("model.safetensors").toString()), m);
    }
    assertTrue(System.nanoTime() - start < 30_000_000_000L, "no rank waits for a collective or a timeout");
    assertEquals(before.length, Files.size(file), "the second save rewrote the same model");
  }

  @Test
  void savedAtWorldTwoLoadsAtOneAndFourWithTheSameOutputs() {
    Path file = dir.resolve("model.safetensors");
    float[] expected = saveAtWorldTwo(file);
    for (int world : new int[] {1, 4}) {
      for (float[] got : RanksAsThreads.run(world, 0, Duration.ofSeconds(60), ctx -> {
        // Same seed as the saved model's initialisation, so Net's one unsharded layer (not in the
        // checkpoint) agrees; every sharded parameter differs from the trained ones until loaded.
        Object net = CheckpointModels.fresh(0);
        float[] before = CheckpointModels.evalOutputs(net);
        Bmt.load(net, file, true);
        float[] after = CheckpointModels.evalOutputs(net);
        assertTrue(!java.util.Arrays.equals(before, after), "the load changed the model");
        return after;
      })) {
        assertClose("outputs at world " + world, expected, got, 0, 0);
      }
    }
  }

  private static String python() {
    for (String exe : List.of("python3", "/usr/bin/python3")) {
      try {
        Process p = new ProcessBuilder(exe, "-c", "import numpy").redirectErrorStream(true).start();
        if (p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0) {
          return exe;
        }
      } catch (IOException | InterruptedException e) {
        // try the next one
      }
    }
    return null;
  }

  private static String runPython(String python, String... args) throws Exception {
    Path script = Path.of("src/test/resources/safetensors_interop.py");
    List<String> cmd = new java.util.ArrayList<>(List.of(python, script.toString()));
    cmd.addAll(List.of(args));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0, out);
    return out;
  }

  @Test
  void anIndependentNumpyReaderAgreesAndItsFilesLoad() throws Exception {
    String python = python();
    Assumptions.assumeTrue(python != null, "python3 with numpy is not installed (.ci/run installs python3-numpy)");
    Path file = dir.resolve("model.safetensors");
    saveAtWorldTwo(file);
    JsonNode read = new ObjectMapper().readTree(runPython(python, "read", file.toString()));
    Map<String, float[]> params = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      Object net = CheckpointModels.fresh(7);
      Bmt.load(net, file, true);
      Map<String, float[]> m = new java.util.LinkedHashMap<>();
      Bmt.gatherParameters(net).forEach((k, v) -> m.put(k, values(v)));
      return m;
    }).get(0);
    assertEquals(params.keySet().size(), read.size());
    params.forEach((k, v) -> {
      double sum = 0;
      for (float x : v) {
        sum += x;
      }
      assertEquals(sum, read.get(k).get("sum").asDouble(), 1e-4 * Math.max(1, Math.abs(sum)), "sum of " + k);
      assertEquals(v[0], read.get(k).get("first").asDouble(), 0, "first element of " + k);
    });
    Path doubled = dir.resolve("doubled.safetensors");
    runPython(python, "double", file.toString(), doubled.toString());
    Map<String, float[]> loaded = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      Object net = CheckpointModels.fresh(7);
      Bmt.load(net, doubled, true);
      Map<String, float[]> m = new java.util.LinkedHashMap<>();
      Bmt.gatherParameters(net).forEach((k, v) -> m.put(k, values(v)));
      return m;
    }).get(0);
    params.forEach((k, v) -> {
      float[] twice = v.clone();
      for (int i = 0; i < twice.length; i++) {
        twice[i] *= 2;
      }
      assertClose("python-written " + k, twice, loaded.get(k), 0, 0);
    });
  }

  private String loadError(Path file, boolean strict) {
    return RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx ->
        assertThrows(CheckpointException.class, () -> Bmt.load(CheckpointModels.fresh(0), file, strict)).getMessage()).get(0);
  }

  @Test
  void truncatedFilesMissingKeysAndWrongShapesAreNamed() throws Exception {
    Path file = dir.resolve("model.safetensors");
    saveAtWorldTwo(file);
    byte[] bytes = Files.readAllBytes(file);

    Path truncated = dir.resolve("truncated.safetensors");
    Files.write(truncated, java.util.Arrays.copyOf(bytes, bytes.length - 100));
    String t = loadError(truncated, true);
    assertTrue(t.contains("truncated") && t.contains(truncated.toString()), t);

    // Rewrite the header: rename one key, change another's shape (same byte count: [8, 8] -> [64]).
    long n = java.nio.ByteBuffer.wrap(bytes, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
    String header = new String(bytes, 8, (int) n, StandardCharsets.UTF_8);
    Path renamed = withHeader(bytes, n, header.replace("\"pre.weight\"", "\"pre.weightx\""), "renamed");
    String m = loadError(renamed, false);
    assertTrue(m.contains("lacks 1 parameter(s)") && m.contains("pre.weight"), m);
    Path reshaped = withHeader(bytes, n, header.replaceFirst("(\"pre.weight\":\\{\"dtype\":\"F32\",\"shape\":)\\[8,8\\]", "$1[64]"), "reshaped");
    String s = loadError(reshaped, true);
    assertTrue(s.contains("'pre.weight'") && s.contains("[64]") && s.contains("[8, 8]"), s);
  }

  private Path withHeader(byte[] original, long n, String header, String name) throws IOException {
    byte[] h = header.getBytes(StandardCharsets.UTF_8);
    int padded = (h.length + 7) / 8 * 8;
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    out.write(java.nio.ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(padded).array());
    out.write(h);
    for (int i = h.length; i < padded; i++) {
      out.write(' ');
    }
    out.write(original, (int) (8 + n), (int) (original.length - 8 - n));
    Path p = dir.resolve(name + ".safetensors");
    Files.write(p, out.toByteArray());
    return p;
  }

  @Test
  void unexpectedKeysFailStrictLoadsOnly() {
    Path file = dir.resolve("model.safetensors");
    saveAtWorldTwo(file);
    String strictError = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      Object small = CheckpointModels.withoutHead(0);
      Bmt.load(small, file, false); // extra keys ignored
      try (NoGradGuard g = new NoGradGuard()) {
        return assertThrows(CheckpointException.class, () -> Bmt.load(small, file, true)).getMessage();
      }
    }).get(0);
    assertTrue(strictError.contains("key(s) this model does not have") && strictError.contains("heads."), strictError);
  }
}
