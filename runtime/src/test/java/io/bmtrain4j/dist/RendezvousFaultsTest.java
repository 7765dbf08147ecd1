package io.bmtrain4j.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.launch.LocalLauncher;
import io.bmtrain4j.testing.RanksAsThreads;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.bytedeco.javacpp.chrono.Milliseconds;
import org.bytedeco.pytorch.StringVector;
import org.bytedeco.pytorch.TCPStore;
import org.bytedeco.pytorch.TCPStoreOptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Jobs that cannot start (see [Note: rendezvous]), with ranks started by hand with torchrun's
 * variables, as an audit would: each fails on every rank with a message naming the problem, in
 * seconds rather than at the timeout. Time bounds here are generous; the figures measured are in
 * the closing notes and docs/BENCHMARKS.md's fault section, not asserted tightly.
 */
class RendezvousFaultsTest {
  @TempDir Path logs;

  private record Rank(Process process, Path log) {
    String output() throws IOException {
      return Files.readString(log, StandardCharsets.UTF_8);
    }

    /** Waits for the exit; returns the status. */
    int exit(long seconds) throws Exception {
      if (!process.waitFor(seconds, TimeUnit.SECONDS)) {
        process.destroyForcibly();
        throw new AssertionError("still running after " + seconds + " s:\n" + output());
      }
      return process.exitValue();
    }
  }

  private Rank start(String name, Map<String, String> env, String... args) throws IOException {
    List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx256m",
        "-cp", System.getProperty("java.class.path"), RendezvousRank.class.getName()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().remove("TORCHELASTIC_USE_AGENT_STORE");
    pb.environment().putAll(env);
    Path log = logs.resolve(name + ".log");
    return new Rank(pb.redirectErrorStream(true).redirectOutput(log.toFile()).start(), log);
  }

  private static Map<String, String> torchrun(int rank, int world, int port) {
    // WORLD_SIZE may differ between ranks here: each gets a local world of its own size.
    return new HashMap<>(LocalLauncher.rankEnvironment(rank, world, port));
  }

  private static void assertFailsNaming(Rank r, long seconds, String expected) throws Exception {
    int status = r.exit(seconds);
    String out = r.output();
    assertNotEquals(0, status, out);
    assertTrue(out.contains(expected), () -> "expected '" + expected + "' in:\n" + out);
    assertTrue(!out.contains("SIGABRT") && !out.contains("terminate called"), () -> "no native abort:\n" + out);
  }

  @Test
  void ranksThatDisagreeOnTheWorldSizeBothFailAtOnce() throws Exception {
    int port = RanksAsThreads.freePort();
    long t0 = System.nanoTime();
    Rank zero = start("world-2", torchrun(0, 2, port), "120");
    Rank one = start("world-3", torchrun(1, 3, port), "120");
    assertFailsNaming(zero, 60, "WORLD_SIZE=3");
    assertFailsNaming(one, 60, "WORLD_SIZE=2");
    double seconds = (System.nanoTime() - t0) / 1e9;
    System.out.printf("figure: WORLD_SIZE 2 against 3: both ranks failed %.1f s after they were started%n", seconds);
    assertTrue(seconds < 60, "well before the 120 s timeout");
  }

  @Test
  void twoProcessesClaimingOneRankAreBothRefused() throws Exception {
    int port = RanksAsThreads.freePort();
    Rank zero = start("rank0", torchrun(0, 3, port), "30");
    Rank first = start("rank1-first", torchrun(1, 3, port), "30");
    Rank second = start("rank1-second", torchrun(1, 3, port), "30");
    assertFailsNaming(first, 60, "joined this job as rank 1");
    assertFailsNaming(second, 60, "joined this job as rank 1");
    assertFailsNaming(zero, 60, "two processes joined this job as rank 1");
  }

  @Test
  void aSecondRankZeroFailsAndSoDoesTheFirst() throws Exception {
    int port = RanksAsThreads.freePort();
    Rank first = start("rank0-first", torchrun(0, 2, port), "120");
    waitForKey(port, "bmt/0/rdzv/info/0", first);
    long t0 = System.nanoTime();
    Rank second = start("rank0-second", torchrun(0, 2, port), "120");
    assertFailsNaming(second, 60, "joined this job as rank 0");
    assertFailsNaming(first, 60, "joined this job as rank 0");
    double seconds = (System.nanoTime() - t0) / 1e9;
    System.out.printf("figure: a second RANK=0 and the first both failed %.1f s after the second started%n", seconds);
    assertTrue(seconds < 60, "not at the 120 s timeout: " + seconds);
  }

  @Test
  void aRankThatDiesAfterJoiningIsNoticedInSeconds() throws Exception {
    int port = RanksAsThreads.freePort();
    Rank zero = start("rank0", torchrun(0, 3, port), "120");
    Rank one = start("rank1", torchrun(1, 3, port), "120");
    // Watch the store as a client until rank 1 has joined, then kill it; rank 2 never comes.
    waitForKey(port, "bmt/0/rdzv/info/1", one);
    one.process().destroyForcibly().waitFor();
    long t0 = System.nanoTime();
    assertFailsNaming(zero, 60, "rank 1 (pid " + one.process().pid());
    double seconds = (System.nanoTime() - t0) / 1e9;
    assertTrue(zero.output().contains("stopped answering"), zero.output());
    System.out.printf("figure: a rank that died after joining was noticed %.1f s after the kill%n", seconds);
    assertTrue(seconds < 40, "noticed in " + seconds + " s, not at the 120 s timeout");
  }

  @Test
  void aPortHeldByAnotherProgramFailsRankZeroAtOnceSayingSo() throws Exception {
    try (ServerSocket other = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
      Thread acceptor = new Thread(() -> {
        List<Socket> held = new ArrayList<>();
        try {
          while (true) {
            held.add(other.accept()); // a program that is not a store: it never answers
          }
        } catch (IOException closed) {
          // the test is over
        }
      });
      acceptor.setDaemon(true);
      acceptor.start();
      long t0 = System.nanoTime();
      Rank zero = start("port-in-use", torchrun(0, 2, other.getLocalPort()), "120");
      assertFailsNaming(zero, 60, "could not serve the rendezvous store at MASTER_PORT=" + other.getLocalPort());
      assertTrue(!zero.output().contains("within"), "it failed at once, not after a wait:\n" + zero.output());
      assertTrue((System.nanoTime() - t0) / 1e9 < 60, "well before the 120 s timeout");
    }
  }

  @Test
  void aRankThatNeverComesIsNamedAtTheTimeout() throws Exception {
    int port = RanksAsThreads.freePort();
    assertFailsNaming(start("alone", torchrun(0, 2, port), "3"), 60, "rank(s) 1 of 2 did not join within 3 s");
  }

  @Test
  void aMasterThatCannotBeFoundOrReachedIsNamed() throws Exception {
    Map<String, String> badName = torchrun(1, 2, 29999);
    badName.put("MASTER_ADDR", "no-such-host.invalid");
    assertFailsNaming(start("bad-name", badName, "60"), 30, "MASTER_ADDR=no-such-host.invalid does not resolve");
    int closed = RanksAsThreads.freePort();
    assertFailsNaming(start("nobody-listens", torchrun(1, 2, closed), "3"), 60, "could not reach rank 0's rendezvous store");
  }

  @Test
  void aStoreThatAcceptsButNeverAnswersEndsTheRankAfterTheTimeout() throws Exception {
    try (ServerSocket silent = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
      List<Socket> held = new ArrayList<>();
      Thread acceptor = new Thread(() -> {
        try {
          while (true) {
            held.add(silent.accept()); // never read, never answer
          }
        } catch (IOException closed) {
          // the test is over
        }
      });
      acceptor.setDaemon(true);
      acceptor.start();
      Rank r = start("silent-store", torchrun(1, 2, silent.getLocalPort()), "2");
      int status = r.exit(120);
      String out = r.output();
      // The store's client blocks in native code: only the guard can end it.
      assertEquals(ProcessGuards.EXIT_STATUS, status, out);
      assertTrue(out.contains("the rendezvous did not finish within 32 s"), out);
    }
  }

  @Test
  void ranksEndWhenTheirLauncherIsKilled() throws Exception {
    List<String> cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx256m",
        "-cp", System.getProperty("java.class.path"), LocalLauncher.class.getName(), "--nproc", "2",
        RendezvousRank.class.getName(), "60", "forever");
    Path log = logs.resolve("launcher.log");
    Process launcher = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
    while (System.nanoTime() < deadline && !(Files.readString(log).contains("[rank 1] joined"))) {
      Thread.sleep(100);
    }
    assertTrue(Files.readString(log).contains("[rank 1] joined"), Files.readString(log));
    List<ProcessHandle> ranks = launcher.descendants().toList();
    assertEquals(2, ranks.size(), Files.readString(log));
    launcher.destroyForcibly().waitFor(); // SIGKILL: the launcher cannot stop its ranks itself
    long t0 = System.nanoTime();
    for (ProcessHandle rank : ranks) {
      rank.onExit().get(30, TimeUnit.SECONDS);
      assertTrue(!rank.isAlive(), "rank " + rank.pid() + " ended with its launcher");
    }
    System.out.printf("figure: both ranks ended %.1f s after their launcher was killed%n", (System.nanoTime() - t0) / 1e9);
  }

  /** Polls rank 0's store, as a client, until {@code key} exists. */
  private static void waitForKey(int port, String key, Rank watched) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
    while (System.nanoTime() < deadline) {
      try (TCPStoreOptions opts = new TCPStoreOptions()) {
        opts.port((short) port).isServer(false).waitWorkers(false).timeout(new Milliseconds(2000));
        try (TCPStore store = new TCPStore("127.0.0.1", opts); StringVector keys = new StringVector(key)) {
          while (System.nanoTime() < deadline) {
            if (store.check(keys)) {
              return;
            }
            Thread.sleep(50);
          }
        }
      } catch (RuntimeException notYet) {
        Thread.sleep(200); // rank 0 not serving yet
      }
    }
    throw new AssertionError(key + " never appeared:\n" + watched.output());
  }
}
