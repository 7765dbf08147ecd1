package io.bmtrain4j.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.testing.RanksAsThreads;
import io.bmtrain4j.testing.TensorAsserts;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class GlooCommunicatorTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(30);

  @ParameterizedTest
  @ValueSource(ints = {1, 2, 4})
  void collectivesComputeWhatTheirNamesSay(int world) {
    List<float[][]> results = RanksAsThreads.run(world, 0, TIMEOUT, ctx -> {
      Communicator c = ctx.communicator();
      int r = c.rank();
      Tensor mine = torch.arange(new Scalar(3)).to(torch.ScalarType.Float).add(new Scalar(10.0 * r));
      Tensor gathered = torch.empty(3L * world);
      c.allGather(gathered, mine).await();
      Tensor big = torch.arange(new Scalar(2 * world)).to(torch.ScalarType.Float).add(new Scalar((double) r));
      Tensor scattered = torch.empty(2);
      c.reduceScatter(scattered, big, ReduceOperation.SUM).await();
      Tensor avg = torch.ones(2).mul(new Scalar((double) r));
      c.allReduce(avg, ReduceOperation.AVG).await();
      Tensor b = torch.ones(2).mul(new Scalar(r + 5.0));
      c.broadcast(b, world - 1).await();
      c.barrier();
      return new float[][] {TensorAsserts.values(gathered), TensorAsserts.values(scattered), TensorAsserts.values(avg), TensorAsserts.values(b)};
    });
    float sumRanks = world * (world - 1) / 2f;
    for (int r = 0; r < world; r++) {
      float[][] got = results.get(r);
      float[] expectGather = new float[3 * world];
      for (int q = 0; q < world; q++) {
        for (int i = 0; i < 3; i++) {
          expectGather[3 * q + i] = i + 10f * q;
        }
      }
      assertArrayEquals(expectGather, got[0], 1e-6f);
      assertArrayEquals(new float[] {world * (2f * r) + sumRanks, world * (2f * r + 1) + sumRanks}, got[1], 1e-5f);
      assertArrayEquals(new float[] {sumRanks / world, sumRanks / world}, got[2], 1e-6f);
      assertArrayEquals(new float[] {world + 4f, world + 4f}, got[3], 1e-6f);
    }
  }

  @Test
  void sendAndReceive() {
    List<float[]> got = RanksAsThreads.run(2, 0, TIMEOUT, ctx -> {
      Communicator c = ctx.communicator();
      Tensor t = ctx.rank() == 0 ? torch.ones(4).mul(new Scalar(7.0)) : torch.zeros(4);
      if (ctx.rank() == 0) {
        c.send(t, 1, 3).await();
      } else {
        c.recv(t, 0, 3).await();
      }
      return TensorAsserts.values(t);
    });
    assertArrayEquals(new float[] {7, 7, 7, 7}, got.get(1), 0f);
  }

  @Test
  void aSilentPeerFailsTheCollectiveWithinTheTimeoutNamingItAndTheRank() {
    List<String> messages = RanksAsThreads.run(2, 0, Duration.ofSeconds(3), ctx -> {
      if (ctx.rank() == 1) {
        Thread.sleep(6000); // alive but never joins the collective
        return "";
      }
      long t0 = System.nanoTime();
      CollectiveException e = assertThrows(CollectiveException.class,
          () -> ctx.communicator().allGather(torch.empty(8), torch.ones(4)).await());
      double seconds = (System.nanoTime() - t0) / 1e9;
      assertTrue(seconds < 6, "failed after " + seconds + " s");
      return e.getMessage();
    });
    assertTrue(messages.get(0).contains("all-gather failed on rank 0 of 2"), messages.get(0));
  }

  @Test
  void sizeMismatchIsRejectedBeforeCommunicating() {
    List<String> messages = RanksAsThreads.run(2, 0, TIMEOUT, ctx -> assertThrows(IllegalArgumentException.class,
        () -> ctx.communicator().allGather(torch.empty(5), torch.ones(4))).getMessage());
    assertTrue(messages.get(0).contains("world size (2) x 4 = 8"), messages.get(0));
  }

  @Test
  void aPeerThatNeverArrivesFailsTheRendezvousWithinTheTimeout() {
    Map<String, String> env = Map.of("RANK", "0", "WORLD_SIZE", "2", "MASTER_ADDR", "127.0.0.1",
        "MASTER_PORT", String.valueOf(RanksAsThreads.freePort()));
    long t0 = System.nanoTime();
    CollectiveException e = assertThrows(CollectiveException.class, () -> Bmt.initDistributed(
        InitOptions.builder().environment(env).timeout(Duration.ofSeconds(2)).build()));
    double seconds = (System.nanoTime() - t0) / 1e9;
    // The rendezvous names the rank that never came (see [Note: rendezvous]) before Gloo would wait for it.
    assertTrue(e.getMessage().contains("rank(s) 1 of 2 did not join within 2 s"), e.getMessage());
    assertTrue(seconds < 10, "took " + seconds + " s");
  }

  @Test
  void anUnreachableMasterNamesTheVariables() {
    Map<String, String> env = Map.of("RANK", "1", "WORLD_SIZE", "2", "MASTER_ADDR", "127.0.0.1",
        "MASTER_PORT", String.valueOf(RanksAsThreads.freePort()));
    CollectiveException e = assertThrows(CollectiveException.class, () -> Bmt.initDistributed(
        InitOptions.builder().environment(env).timeout(Duration.ofSeconds(2)).build()));
    assertTrue(e.getMessage().contains("MASTER_ADDR=127.0.0.1 MASTER_PORT="), e.getMessage());
  }

  @Test
  void aCollectiveNobodyAwaitedIsFinishedWhenTheCommunicatorCloses() {
    // Before the fix its Work outlived the process group, and the garbage collector's free of it
    // corrupted the native heap: the JVM aborted at a later malloc.
    for (int round = 0; round < 3; round++) {
      List<Float> sums = RanksAsThreads.run(2, 0, TIMEOUT, ctx -> {
        Tensor t = torch.ones(3);
        ctx.communicator().allReduce(t, ReduceOperation.SUM); // issued, never awaited
        return 0f;
      });
      System.gc();
      assertEquals(2, sums.size());
    }
    List<float[]> after = RanksAsThreads.run(2, 0, TIMEOUT, ctx -> {
      Tensor t = torch.ones(2);
      ctx.communicator().allReduce(t, ReduceOperation.SUM).await();
      return TensorAsserts.values(t);
    });
    assertArrayEquals(new float[] {2, 2}, after.get(0), 0f);
  }

  @Test
  void ranksGivenDifferentReduceStreamOptionsBothFailNamingIt() throws Exception {
    int port = RanksAsThreads.freePort();
    java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(2);
    try {
      List<java.util.concurrent.Future<String>> outcomes = new java.util.ArrayList<>();
      for (int rank = 0; rank < 2; rank++) {
        boolean separate = rank == 1;
        Map<String, String> env = Map.of("RANK", String.valueOf(rank), "WORLD_SIZE", "2", "LOCAL_RANK", String.valueOf(rank),
            "LOCAL_WORLD_SIZE", "2", "MASTER_ADDR", "127.0.0.1", "MASTER_PORT", String.valueOf(port));
        outcomes.add(pool.submit(() -> {
          try {
            Bmt.initDistributed(InitOptions.builder().timeout(TIMEOUT).environment(env).processGuards(false)
                .separateReduceStream(separate).build()).close();
            return "joined";
          } catch (CollectiveException e) {
            return e.getMessage();
          }
        }));
      }
      for (java.util.concurrent.Future<String> f : outcomes) {
        String message = f.get(60, java.util.concurrent.TimeUnit.SECONDS);
        assertTrue(message.contains("separateReduceStream(true)") && message.contains("separateReduceStream(false)")
            && message.contains("same options"), message);
      }
    } finally {
      pool.shutdownNow();
    }
  }
}
