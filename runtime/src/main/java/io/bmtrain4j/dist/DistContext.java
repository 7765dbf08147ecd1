package io.bmtrain4j.dist;

import io.bmtrain4j.natives.NativeLibraries;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.bytedeco.javacpp.chrono.Milliseconds;
import org.bytedeco.pytorch.TCPStore;
import org.bytedeco.pytorch.TCPStoreOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * One process's (or, in tests, one thread's) membership in a job: its place, its communicator and
 * the rendezvous store. Created by {@code Bmt.initDistributed}; the generated classes find it
 * through {@link #current()} when they are constructed and keep it.
 *
 * <p>The current context is per thread when set on that thread (ranks as threads in tests),
 * else the process-wide one.
 */
public final class DistContext implements AutoCloseable {
  private static final ThreadLocal<DistContext> THREAD = new ThreadLocal<>();
  private static volatile DistContext process;

  private final DistEnvironment env;
  private final CommContext comm;
  private final TCPStore store;
  private final long seed;
  private final Map<String, java.util.concurrent.atomic.AtomicInteger> agreements = new ConcurrentHashMap<>();

  private DistContext(DistEnvironment env, Communicator communicator, TCPStore store, long seed) {
    this.env = env;
    this.comm = new CommContext(communicator);
    this.store = store;
    this.seed = seed;
  }

  /**
   * Joins the job described by {@code env}: rendezvous through a TCPStore at MASTER_ADDR:MASTER_PORT
   * (rank 0 serves it unless torchrun's agent already does), then a Gloo process group. Seeds
   * libtorch's generator with {@code seed} on every rank, so initialisation agrees everywhere.
   */
  public static DistContext create(DistEnvironment env, long seed, Duration timeout) {
    return create(env, seed, timeout, Backend.GLOO);
  }

  /** As {@link #create(DistEnvironment, long, Duration)}, with Gloo (CPU) or NCCL (one GPU per rank) collectives. */
  public static DistContext create(DistEnvironment env, long seed, Duration timeout, Backend backend) {
    return create(env, seed, timeout, backend, false);
  }

  /** As above; {@code separateReduceStream}: NCCL reductions on a communicator and stream of their own. */
  public static DistContext create(DistEnvironment env, long seed, Duration timeout, Backend backend,
      boolean separateReduceStream) {
    NativeLibraries.load(); // see [Note: native cache]
    torch.manual_seed(seed);
    if (env.worldSize() == 1) {
      return new DistContext(env, new LocalCommunicator(), null, seed);
    }
    boolean server = env.rank() == 0 && !env.agentStore();
    // One deadline for the whole rendezvous, each phase getting what is left of it.
    long deadline = System.nanoTime() + timeout.toNanos();
    Rendezvous.checkMasterReachable(env, server, timeout, deadline); // see [Note: rendezvous]
    TCPStore store = connectStore(env, server, left(deadline));
    Communicator comm;
    try {
      Rendezvous rendezvous = Rendezvous.join(store, env, timeout, deadline);
      try {
        // Checked whatever the backend (Gloo ignores the option): with NCCL, ranks that differ
        // would block in different NCCL calls.
        String topic = "InitOptions";
        requireSame(env, topic, List.of("separateReduceStream(" + separateReduceStream + ")"),
            new StoreRound(store, Rendezvous.keyPrefix() + topic + "-hash/join/"),
            new StoreRound(store, Rendezvous.keyPrefix() + topic + "/join/"));
        if (backend == Backend.NCCL) {
          comm = new NcclCommunicator(store, env.rank(), env.worldSize(), env.localRank(), timeout, separateReduceStream);
        } else {
          String host = isLoopback(env.masterAddr()) ? "127.0.0.1" : localHostName();
          comm = new GlooCommunicator(store, env.rank(), env.worldSize(), host, timeout);
        }
      } finally {
        rendezvous.finish();
      }
    } catch (RuntimeException | Error e) {
      if (server) {
        lingerForPeers(); // rank 0 serves the store: let the others read why the rendezvous failed
      }
      store.close(); // rank 0's server would keep the port bound in a JVM that goes on
      throw e;
    }
    return new DistContext(env, comm, store, seed);
  }

  private static void lingerForPeers() {
    try {
      Thread.sleep(1500);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static Duration left(long deadline) {
    return Duration.ofNanos(Math.max(1_000_000_000L, deadline - System.nanoTime()));
  }

  private static TCPStore connectStore(DistEnvironment env, boolean server, Duration timeout) {
    try {
      return openStore(env, server, timeout);
    } catch (RuntimeException e) {
      if (server) {
        refuseIfRankZeroIsTaken(env);
      }
      throw new CollectiveException(server
          ? "rank 0 could not serve the rendezvous store at MASTER_PORT=" + env.masterPort() + ": " + GlooCommunicator.firstLine(e)
              + " (is the port in use by another job, or by a second process started as rank 0?)"
          : "rank " + env.rank() + " could not connect to the rendezvous store at MASTER_ADDR=" + env.masterAddr()
              + " MASTER_PORT=" + env.masterPort() + " within " + timeout.toSeconds() + " s: " + GlooCommunicator.firstLine(e)
              + " (is rank 0 running, and are MASTER_ADDR/MASTER_PORT right?)",
          e);
    }
  }

  private static TCPStore openStore(DistEnvironment env, boolean server, Duration timeout) {
    try (TCPStoreOptions opts = new TCPStoreOptions()) {
      opts.port((short) env.masterPort()).isServer(server).waitWorkers(false).timeout(new Milliseconds(timeout.toMillis()));
      return new TCPStore(env.masterAddr(), opts);
    }
  }

  /**
   * Rank 0 could not serve the store. If that is because another rank 0 of this job already
   * does, claim rank 0 there too: the claim fails this process, and the first rank 0 sees the
   * second claim and fails as well, instead of waiting for the timeout (see [Note: rendezvous]).
   */
  private static void refuseIfRankZeroIsTaken(DistEnvironment env) {
    // Whatever holds the port may not speak the store's protocol and never answer: the store's
    // client constructor would then block in native code, so it runs on a thread we can abandon.
    java.util.concurrent.CompletableFuture<TCPStore> attempt = new java.util.concurrent.CompletableFuture<>();
    Thread t = new Thread(() -> {
      try {
        attempt.complete(openStore(env, false, Duration.ofSeconds(2)));
      } catch (RuntimeException | Error e) {
        attempt.completeExceptionally(e);
      }
    }, "bmt-rank-zero-probe");
    t.setDaemon(true);
    t.start();
    TCPStore existing;
    try {
      existing = attempt.get(3, java.util.concurrent.TimeUnit.SECONDS);
    } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException notAStore) {
      return; // something else holds the port; the caller says so
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return;
    }
    try {
      Rendezvous.refuseSecondRankZero(existing, env);
    } finally {
      existing.close();
    }
  }

  private static boolean isLoopback(String addr) {
    return addr.equals("localhost") || addr.startsWith("127.");
  }

  static String localHostName() {
    try {
      return InetAddress.getLocalHost().getHostName();
    } catch (UnknownHostException e) {
      return "127.0.0.1";
    }
  }

  /** Makes {@code ctx} current for this thread, and for the process if none is yet. */
  public static void install(DistContext ctx) {
    THREAD.set(ctx);
    synchronized (DistContext.class) {
      if (process == null) {
        process = ctx;
      }
    }
  }

  /** The context of this thread, else of the process; fails if {@code Bmt.initDistributed} was not called. */
  public static DistContext current() {
    DistContext c = THREAD.get();
    if (c == null) {
      c = process;
    }
    if (c == null) {
      throw new IllegalStateException(
          "bmtrain4j is not initialised: call Bmt.initDistributed(InitOptions.builder().build()) before constructing a Distributed* model");
    }
    return c;
  }

  public static boolean isInitialised() {
    return THREAD.get() != null || process != null;
  }

  public int rank() {
    return env.rank();
  }

  public int worldSize() {
    return env.worldSize();
  }

  public int localRank() {
    return env.localRank();
  }

  public int localWorldSize() {
    return env.localWorldSize();
  }

  public long seed() {
    return seed;
  }

  public DistEnvironment environment() {
    return env;
  }

  /** The job's communication: its communicators and the reductions in flight on them. */
  public CommContext comm() {
    return comm;
  }

  /** The data-parallel communicator ({@link CommContext#dataParallel()}): every rank of the job. */
  public Communicator communicator() {
    return comm.dataParallel();
  }

  /**
   * Opens the next round of {@code topic} on the store (see {@link StoreRound}). Keys carry
   * torchrun's restart count, so a restarted job never reads an earlier attempt's messages.
   */
  public StoreRound storeRound(String topic) {
    int n = agreements.computeIfAbsent(topic, k -> new java.util.concurrent.atomic.AtomicInteger()).getAndIncrement();
    return new StoreRound(env.worldSize() == 1 ? null : store, Rendezvous.keyPrefix() + topic + "/" + n + "/");
  }

  /**
   * Fails on every rank at once, naming two ranks and the first difference, unless every rank
   * passes the same {@code description} for the same (n-th) use of {@code topic}. Goes through
   * the rendezvous store, so it works before (and whatever) the communicator moves, and a
   * disagreement never reaches a collective, where Gloo aborts the process on mismatched sizes.
   * Each rank reads every rank's hash and only the first differing rank's full description.
   */
  public void requireSameOnEveryRank(String topic, List<String> description) {
    if (store == null || env.worldSize() == 1) {
      return;
    }
    requireSame(env, topic, description, storeRound(topic + "-hash"), storeRound(topic));
  }

  /** {@link #requireSameOnEveryRank} through the given rounds: usable while joining, before a context exists. */
  private static void requireSame(DistEnvironment env, String topic, List<String> description, StoreRound hashes,
      StoreRound texts) {
    String mine = String.join("\n", description);
    texts.publish(env.rank(), mine);
    String myHash = sha256(mine);
    hashes.publish(env.rank(), myHash);
    for (int q = 0; q < env.worldSize(); q++) {
      if (q == env.rank() || hashes.get(q).equals(myHash)) {
        continue;
      }
      List<String> other = List.of(texts.get(q).split("\n", -1));
      int i = 0;
      while (i < description.size() && i < other.size() && description.get(i).equals(other.get(i))) {
        i++;
      }
      String a = i < description.size() ? "'" + description.get(i) + "'" : "nothing more";
      String b = i < other.size() ? "'" + other.get(i) + "'" : "nothing more";
      throw new CollectiveException("rank " + env.rank() + "'s " + topic + " differs from rank " + q + "'s at entry " + i
          + ": rank " + env.rank() + " has " + a + ", rank " + q + " has " + b
          + ". Every rank must build the same " + topic + " (start them with the same options)");
    }
  }

  private static String sha256(String s) {
    try {
      byte[] d = java.security.MessageDigest.getInstance("SHA-256").digest(s.getBytes(java.nio.charset.StandardCharsets.UTF_8));
      return java.util.HexFormat.of().formatHex(d);
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException("every JVM has SHA-256", e);
    }
  }

  /** Leaves the job: closes the communicator and the store; this thread (and the process, if it was) forgets the context. */
  @Override
  public void close() {
    comm.dataParallel().close();
    if (store != null) {
      store.close();
    }
    if (THREAD.get() == this) {
      THREAD.remove();
    }
    synchronized (DistContext.class) {
      if (process == this) {
        process = null;
      }
    }
  }
}
