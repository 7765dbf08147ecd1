package io.bmtrain4j.natives;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.testing.RanksAsThreads;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Several JVMs that start together on one native cache (see [Note: native cache]), as torchrun,
 * Slurm and every launcher start their ranks: on an empty cache, on a damaged one, and after a
 * process was killed while it unpacked. Each start is by hand with torchrun's variables, not
 * through the local launcher, which loads the natives once before its ranks and would hide the race.
 */
class NativeLoadingTest {
  private static final int WORLD = 4;
  private static final long TIMEOUT_SECONDS = 240;

  @TempDir Path work;

  @Test
  void fourJvmsOnAnEmptyCacheThenOnADamagedOneAllLoadAndRunACollective() throws Exception {
    Path cache = work.resolve("cache");
    assertAllRanksLoad(cache, "empty cache");

    Path torchCpu = cachedLibrary(cache, "libtorch_cpu.so");
    long whole = Files.size(torchCpu);
    FileTime stamp = Files.getLastModifiedTime(torchCpu);
    // What a rank killed mid-write leaves behind, time stamp and all.
    try (var ch = java.nio.channels.FileChannel.open(torchCpu, java.nio.file.StandardOpenOption.WRITE)) {
      ch.truncate(whole / 10);
    }
    Files.setLastModifiedTime(torchCpu, stamp);
    // A whole file whose time stamp JavaCPP never set: the write may not have finished.
    Path c10 = cachedLibrary(cache, "libc10.so");
    FileTime c10Stamp = Files.getLastModifiedTime(c10);
    Files.setLastModifiedTime(c10, FileTime.fromMillis(System.currentTimeMillis()));

    String out = assertAllRanksLoad(cache, "truncated libtorch_cpu.so");
    assertEquals(whole, Files.size(torchCpu), "libtorch_cpu.so was extracted again");
    assertEquals(stamp, Files.getLastModifiedTime(torchCpu));
    assertTrue(out.contains("re-extracted a damaged native library: " + torchCpu), out);
    assertEquals(c10Stamp, Files.getLastModifiedTime(c10), "libc10.so was extracted again too");
    assertTrue(out.contains("re-extracted a damaged native library: " + c10), out);
  }

  @Test
  void aProcessKilledWhileUnpackingLeavesACacheTheNextStartRepairs() throws Exception {
    Path cache = work.resolve("cache");
    Process first = rank(cache, 0, 1, RanksAsThreads.freePort(), work.resolve("killed.log"));
    // Wait until it is writing libtorch_cpu.so (the file exists but is short), then kill it there.
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
    boolean midWrite = false;
    while (System.nanoTime() < deadline && first.isAlive()) {
      Path lib = findCached(cache, "libtorch_cpu.so");
      if (lib != null && Files.size(lib) > 0 && Files.size(lib) < 300_000_000L) {
        midWrite = true;
        break;
      }
      Thread.sleep(5);
    }
    first.destroyForcibly().waitFor();
    assertTrue(midWrite, "the first process was killed while it wrote libtorch_cpu.so:\n"
        + Files.readString(work.resolve("killed.log")));
    assertAllRanksLoad(cache, "cache left by a killed process");
  }

  /** Starts {@link #WORLD} ranks at once on {@code cache}; each must load libtorch and all-reduce. Returns their output. */
  private String assertAllRanksLoad(Path cache, String what) throws Exception {
    int port = RanksAsThreads.freePort();
    List<Process> procs = new ArrayList<>();
    List<Path> logs = new ArrayList<>();
    for (int r = 0; r < WORLD; r++) {
      Path log = work.resolve(what.replace(' ', '-') + "-rank" + r + ".log");
      logs.add(log);
      procs.add(rank(cache, r, WORLD, port, log));
    }
    StringBuilder all = new StringBuilder();
    for (int r = 0; r < WORLD; r++) {
      Process p = procs.get(r);
      boolean done = p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS);
      if (!done) {
        procs.forEach(Process::destroyForcibly);
      }
      String out = Files.readString(logs.get(r), StandardCharsets.UTF_8);
      all.append(out);
      assertTrue(done, what + ": rank " + r + " still running after " + TIMEOUT_SECONDS + " s:\n" + out);
      assertFalse(out.contains("SIGBUS"), what + ": rank " + r + " crashed in the native loader:\n" + out);
      assertEquals(0, p.exitValue(), what + ": rank " + r + " failed:\n" + out);
      assertTrue(out.contains("rank " + r + " sum=" + WORLD * (WORLD + 1) / 2), what + ":\n" + out);
    }
    try (Stream<Path> files = Files.walk(cache)) {
      assertEquals(List.of(), files.filter(f -> f.getFileName().toString().contains(".tmp-")).toList(),
          "no temporary file is left in the cache");
    }
    return all.toString();
  }

  private static Process rank(Path cache, int rank, int world, int port, Path log) throws IOException {
    ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-Dorg.bytedeco.javacpp.cachedir=" + cache, "-Xmx256m", "-cp", System.getProperty("java.class.path"),
        NativeLoadRank.class.getName());
    pb.environment().remove("TORCHELASTIC_USE_AGENT_STORE");
    pb.environment().putAll(io.bmtrain4j.launch.LocalLauncher.rankEnvironment(rank, world, port));
    return pb.redirectErrorStream(true).redirectOutput(log.toFile()).start();
  }

  private static Path cachedLibrary(Path cache, String name) throws IOException {
    Path p = findCached(cache, name);
    assertNotEquals(null, p, name + " is in the cache");
    return p;
  }

  private static Path findCached(Path cache, String name) throws IOException {
    if (!Files.isDirectory(cache)) {
      return null;
    }
    try (Stream<Path> files = Files.walk(cache)) {
      return files.filter(f -> f.getFileName().toString().equals(name) && !Files.isSymbolicLink(f))
          .findFirst().orElse(null);
    }
  }
}
