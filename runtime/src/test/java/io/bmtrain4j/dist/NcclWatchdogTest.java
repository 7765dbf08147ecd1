package io.bmtrain4j.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;

/**
 * The NCCL watchdog's decisions, without a GPU: collectives are fakes whose completion the test
 * controls, and the exit is recorded instead of ending the JVM. (On 2 H100s, bench/gpu-checks.sh
 * runs the real thing: a vanished peer ends the survivor in 19 s with status 75.)
 */
class NcclWatchdogTest {
  /** A collective that completes when the test says so. */
  static final class FakeCollective implements NcclWatchdog.Watched {
    final AtomicBoolean done = new AtomicBoolean();
    final long issued = System.nanoTime();
    volatile RuntimeException failure;

    @Override
    public boolean poll() {
      return done.get();
    }

    @Override
    public long issuedNanos() {
      return issued;
    }

    @Override
    public String describe() {
      return "all-gather (collective #7)";
    }

    @Override
    public void fail(RuntimeException e) {
      failure = e;
    }
  }

  @Test
  void aCollectiveStuckPastTheTimeoutAbortsAndExitsNamingItAndTheRank() throws Exception {
    CompletableFuture<Integer> exit = new CompletableFuture<>();
    AtomicBoolean aborted = new AtomicBoolean();
    FakeCollective stuck = new FakeCollective();
    long start = System.nanoTime();
    try (NcclWatchdog w = new NcclWatchdog("rank 0 of 2", -1, Duration.ofMillis(300), () -> null,
        () -> aborted.set(true), exit::complete)) {
      w.track(stuck);
      assertEquals(NcclWatchdog.EXIT_STATUS, exit.get(5, TimeUnit.SECONDS));
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    assertTrue(seconds >= 0.3 && seconds < 3, "gave up after " + seconds + " s for a 0.3 s timeout");
    assertTrue(aborted.get(), "the communicator must be aborted so the spinning kernels end");
    assertNotNull(stuck.failure, "a later await() must rethrow");
    String message = stuck.failure.getMessage();
    assertTrue(message.contains("all-gather (collective #7)") && message.contains("rank 0 of 2")
        && message.contains("InitOptions.timeout"), message);
  }

  @Test
  void collectivesThatCompleteInTimeAreForgottenAndNothingHappens() throws Exception {
    CompletableFuture<Integer> exit = new CompletableFuture<>();
    FakeCollective first = new FakeCollective();
    FakeCollective second = new FakeCollective();
    try (NcclWatchdog w = new NcclWatchdog("rank 1 of 2", -1, Duration.ofMillis(400), () -> null, () -> { },
        exit::complete)) {
      w.track(first);
      w.track(second);
      Thread.sleep(100);
      first.done.set(true);
      second.done.set(true);
      Thread.sleep(700); // past the timeout, counted from their issue
      assertFalse(exit.isDone(), "completed collectives must not trip the watchdog");
    }
    assertNull(first.failure);
    assertNull(second.failure);
  }

  @Test
  void anAsynchronousNcclErrorEndsTheRankAtOnce() throws Exception {
    CompletableFuture<Integer> exit = new CompletableFuture<>();
    FakeCollective pending = new FakeCollective();
    AtomicBoolean broken = new AtomicBoolean();
    try (NcclWatchdog w = new NcclWatchdog("rank 3 of 4", -1, Duration.ofMinutes(5),
        () -> broken.get() ? "remote process exited or there was a network error" : null, () -> { }, exit::complete)) {
      w.track(pending);
      Thread.sleep(100);
      assertFalse(exit.isDone());
      broken.set(true);
      assertEquals(NcclWatchdog.EXIT_STATUS, exit.get(5, TimeUnit.SECONDS));
    }
    assertTrue(pending.failure.getMessage().contains("asynchronous error on rank 3 of 4"), pending.failure.getMessage());
  }
}
