package io.bmtrain4j.testing;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.dist.DistContext;
import java.io.IOException;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Runs N ranks of one job as N threads of this JVM, each with its own TCPStore client and Gloo
 * process group, exactly as N processes would (torchrun's variables, given per thread). For
 * tests and quick experiments; real jobs run one process per rank.
 *
 * <p>libtorch's default random generator is shared by the threads: code that draws random
 * numbers must hold {@link #RNG_LOCK} (and re-seed) so every rank draws the same stream.
 */
public final class RanksAsThreads {
  /** Held while a rank seeds and draws from the process-wide generator. */
  public static final Object RNG_LOCK = new Object();

  private RanksAsThreads() {}

  /** Work of one rank. */
  @FunctionalInterface
  public interface RankBody<T> {
    T run(DistContext ctx) throws Exception;
  }

  /** Runs {@code body} on {@code world} ranks and returns each rank's result, in rank order. */
  public static <T> List<T> run(int world, long seed, Duration timeout, RankBody<T> body) {
    int port = freePort();
    ExecutorService pool = Executors.newFixedThreadPool(world, r -> {
      Thread t = new Thread(r);
      t.setDaemon(true);
      t.setName("rank-thread");
      return t;
    });
    try {
      List<Future<T>> futures = new ArrayList<>();
      for (int rank = 0; rank < world; rank++) {
        Map<String, String> env = Map.of(
            "RANK", String.valueOf(rank),
            "WORLD_SIZE", String.valueOf(world),
            "LOCAL_RANK", String.valueOf(rank),
            "LOCAL_WORLD_SIZE", String.valueOf(world),
            "MASTER_ADDR", "127.0.0.1",
            "MASTER_PORT", String.valueOf(port));
        futures.add(pool.submit(() -> {
          Thread.currentThread().setName("rank-" + env.get("RANK"));
          DistContext ctx = Bmt.initDistributed(InitOptions.builder().seed(seed).timeout(timeout).environment(env).processGuards(false).build());
          try {
            return body.run(ctx);
          } finally {
            ctx.close();
          }
        }));
      }
      List<T> results = new ArrayList<>();
      for (Future<T> f : futures) {
        results.add(f.get(timeout.toMillis() * 4, TimeUnit.MILLISECONDS));
      }
      return results;
    } catch (ExecutionException e) {
      Throwable c = e.getCause();
      if (c instanceof RuntimeException) {
        throw (RuntimeException) c;
      }
      if (c instanceof Error) {
        throw (Error) c;
      }
      throw new IllegalStateException(c);
    } catch (InterruptedException | TimeoutException e) {
      throw new IllegalStateException("ranks did not finish in time", e);
    } finally {
      pool.shutdownNow();
    }
  }

  /** A TCP port free on the loopback interface now. */
  public static int freePort() {
    try (ServerSocket s = new ServerSocket(0)) {
      s.setReuseAddress(true);
      return s.getLocalPort();
    } catch (IOException e) {
      throw new IllegalStateException("no free port", e);
    }
  }
}
