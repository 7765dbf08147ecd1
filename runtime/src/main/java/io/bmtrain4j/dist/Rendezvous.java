package io.bmtrain4j.dist;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.TreeMap;
import org.bytedeco.pytorch.ByteVector;
import org.bytedeco.pytorch.Store;
import org.bytedeco.pytorch.StringVector;

/**
 * The checks every rank makes before it builds a process group, so that a job that cannot work
 * fails at once, on every rank, with a message naming the ranks, instead of after the timeout or
 * with a native abort.
 *
 * <p>[Note: rendezvous] libtorch's store and process groups only wait: a rank that never comes,
 * one that came and died, two processes claiming one rank, and ranks that disagree on the world
 * size all look the same to them, a wait until the timeout (or forever, inside the store's own
 * connect). So, on the store:
 * <ol>
 *   <li>MASTER_ADDR must resolve, and a client rank first reaches MASTER_PORT with plain sockets
 *       (short connects, retried until the deadline), so an unreachable or absent rank 0 gives
 *       one line, not c10d's retries;</li>
 *   <li>each rank claims its rank with an atomic counter (a second claim fails both processes),
 *       publishes its world size, host and pid, and then beats a heartbeat counter once a
 *       second until the process group exists;</li>
 *   <li>each rank waits for every peer's record, failing as soon as one disagrees on the world
 *       size (a rank numbered beyond this world included), two processes claim one rank, or a
 *       peer stops beating after it joined ({@link #HEARTBEAT_LOSS}); a rank that never arrives
 *       is named when the timeout ends. A rank that has seen every record adds to a shared
 *       "ready" count, and all leave together once it reaches the world size, so no rank builds
 *       the process group while a duplicate or a stray rank can still appear, and no rank judges
 *       the heartbeat of a peer that has already left.</li>
 * </ol>
 * A rank that dies before it reaches the store cannot be told from a slow one: that case waits
 * for the timeout ({@code --timeout} in the examples' mains).
 */
final class Rendezvous {
  /** A joined peer whose heartbeat has not moved for this long is taken as gone. */
  static final Duration HEARTBEAT_LOSS = Duration.ofSeconds(6);
  private static final Duration BEAT = Duration.ofSeconds(1);
  private static final Duration POLL = Duration.ofMillis(50);

  private final Store store;
  private final DistEnvironment env;
  private final Duration timeout;
  private final long deadline;
  private final String prefix;
  private volatile boolean done;
  private Thread heartbeat;

  private Rendezvous(Store store, DistEnvironment env, Duration timeout, long deadline) {
    this.store = store;
    this.env = env;
    this.timeout = timeout;
    this.deadline = deadline;
    this.prefix = rendezvousPrefix();
  }

  private static String rendezvousPrefix() {
    return keyPrefix() + "rdzv/";
  }

  /** The prefix of this job attempt's store keys: torchrun's agent store outlives restarts of the workers. */
  static String keyPrefix() {
    return "bmt/" + System.getenv().getOrDefault("TORCHELASTIC_RESTART_COUNT", "0") + "/";
  }

  /** Step 1 of [Note: rendezvous]: fails fast on a name that does not resolve or a rank 0 that cannot be reached. */
  static void checkMasterReachable(DistEnvironment env, boolean server, Duration timeout, long deadline) {
    InetAddress address;
    try {
      address = InetAddress.getByName(env.masterAddr());
    } catch (UnknownHostException e) {
      throw new CollectiveException("rank " + env.rank() + ": MASTER_ADDR=" + env.masterAddr()
          + " does not resolve to an address: set it to rank 0's host name or IP address");
    }
    if (server) {
      return;
    }
    IOException last = null;
    while (System.nanoTime() < deadline) {
      try (Socket s = new Socket()) {
        long left = Math.max(1, (deadline - System.nanoTime()) / 1_000_000);
        s.connect(new InetSocketAddress(address, env.masterPort()), (int) Math.min(2000, left));
        return;
      } catch (IOException e) {
        last = e;
        sleep(Duration.ofMillis(200));
      }
    }
    throw new CollectiveException("rank " + env.rank() + " could not reach rank 0's rendezvous store at MASTER_ADDR="
        + env.masterAddr() + " MASTER_PORT=" + env.masterPort() + " within " + timeout.toSeconds() + " s ("
        + (last == null ? "no attempt" : last.getMessage()) + "): is rank 0 running, and are MASTER_ADDR/MASTER_PORT right?");
  }

  /** Steps 2 and 3 of [Note: rendezvous]; the returned handle stops the heartbeat once the process group exists. */
  static Rendezvous join(Store store, DistEnvironment env, Duration timeout, long deadline) {
    Rendezvous r = new Rendezvous(store, env, timeout, deadline);
    try {
      r.claimAndPublish();
      r.startHeartbeat();
      r.awaitPeers();
    } catch (CollectiveException e) {
      r.finish();
      r.publishFailure(e.getMessage());
      throw e;
    } catch (RuntimeException | Error e) {
      r.finish();
      throw e;
    }
    return r;
  }

  /** Tells the other ranks why this one gave up, so they fail with the reason rather than a lost connection. */
  private void publishFailure(String message) {
    try {
      set(prefix + "failed", message);
    } catch (RuntimeException storeGone) {
      // The store itself is gone: every rank will see that.
    }
  }

  /** Stops the heartbeat: the process group now watches the peers. */
  void finish() {
    done = true;
    if (heartbeat != null) {
      heartbeat.interrupt();
      try {
        heartbeat.join(2000); // it uses the store: it must be gone before anyone closes the store
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  private void claimAndPublish() {
    long claims = store.add(prefix + "claims/" + env.rank(), 1);
    if (claims > 1) {
      throw new CollectiveException("rank " + env.rank() + ": two processes joined this job as rank " + env.rank()
          + " (the other: " + describe(env.rank()) + "); every process needs its own RANK");
    }
    set(prefix + "info/" + env.rank(), "world=" + env.worldSize() + " host=" + DistContext.localHostName() + " pid="
        + ProcessHandle.current().pid());
  }

  private void startHeartbeat() {
    heartbeat = new Thread(() -> {
      while (!done) {
        try {
          store.add(prefix + "beat/" + env.rank(), 1);
          Thread.sleep(BEAT.toMillis());
        } catch (InterruptedException e) {
          return;
        } catch (RuntimeException e) {
          return; // the store is gone (rank 0 died): the waiting loop reports it
        }
      }
    }, "bmt-rendezvous-heartbeat");
    heartbeat.setDaemon(true);
    heartbeat.start();
  }

  /**
   * Waits until every rank has joined and has seen every other join (a shared "ready" count), so
   * no rank builds the process group while a duplicate or a stray rank can still appear.
   */
  private void awaitPeers() {
    int world = env.worldSize();
    // O(world) store requests per poll and rank: poll less often in large jobs, and judge a
    // heartbeat over at least three polls.
    Duration poll = POLL.multipliedBy(Math.max(1, world / 8));
    long heartbeatLoss = Math.max(HEARTBEAT_LOSS.toNanos(), poll.multipliedBy(3).toNanos());
    boolean[] joined = new boolean[world];
    long[] lastBeat = new long[world];
    long[] lastBeatSeen = new long[world];
    boolean ready = false;
    while (true) {
      // Once every rank has seen every other, ranks leave and stop beating: check this first.
      if (ready && store.add(prefix + "ready", 0) >= world) {
        return;
      }
      if (exists(prefix + "failed")) {
        throw new CollectiveException("rank " + env.rank() + " stops: the rendezvous failed elsewhere: " + get(prefix + "failed"));
      }
      long now = System.nanoTime();
      int missing = 0;
      for (int q = 0; q < world; q++) {
        if (!joined[q]) {
          if (exists(prefix + "info/" + q)) {
            requireSameWorld(q);
            joined[q] = true;
            lastBeatSeen[q] = now;
          } else {
            missing++;
            continue;
          }
        }
        if (store.add(prefix + "claims/" + q, 0) > 1) {
          throw new CollectiveException("rank " + env.rank() + ": two processes joined this job as rank " + q
              + (q == env.rank() ? " (this one and another)" : "") + "; every process needs its own RANK");
        }
        if (q != env.rank()) {
          long beat = store.add(prefix + "beat/" + q, 0);
          if (beat != lastBeat[q]) {
            lastBeat[q] = beat;
            lastBeatSeen[q] = now;
          } else if (now - lastBeatSeen[q] > heartbeatLoss) {
            throw new CollectiveException("rank " + q + " (" + describe(q) + ") joined the rendezvous and then stopped"
                + " answering for " + heartbeatLoss / 1_000_000_000L + " s: it has probably died; rank " + env.rank()
                + " gives up");
          }
        }
      }
      if (exists(prefix + "info/" + world)) { // a rank beyond this world: it has a larger WORLD_SIZE
        requireSameWorld(world);
      }
      if (missing == 0 && !ready) {
        store.add(prefix + "ready", 1);
        ready = true;
        continue;
      }
      if (now > deadline) {
        StringBuilder absent = new StringBuilder();
        for (int q = 0; q < world; q++) {
          if (!joined[q]) {
            absent.append(absent.length() == 0 ? "" : ", ").append(q);
          }
        }
        throw new CollectiveException("rank " + env.rank() + ": " + (absent.length() > 0
            ? "rank(s) " + absent + " of " + world + " did not join within " + timeout.toSeconds()
                + " s (were they started, with the same MASTER_ADDR/MASTER_PORT?)"
            : "every rank joined, but not all of them confirmed it within " + timeout.toSeconds() + " s"));
      }
      sleep(poll);
    }
  }

  private void requireSameWorld(int q) {
    int theirWorld = Integer.parseInt(info(q).getOrDefault("world", "-1"));
    if (theirWorld != env.worldSize()) {
      throw new CollectiveException("rank " + env.rank() + " has WORLD_SIZE=" + env.worldSize() + " but rank " + q + " ("
          + describe(q) + ") has WORLD_SIZE=" + theirWorld + ": every rank must be started with the same WORLD_SIZE");
    }
  }

  /**
   * For a second process started as rank 0 that found the port taken: if the store there is this
   * job's, claim rank 0 in it, which fails the first rank 0 too (it watches the claims), and
   * fail. Publishes nothing and waits for nothing; returns quietly for any other store.
   */
  static void refuseSecondRankZero(Store existing, DistEnvironment env) {
    String prefix = rendezvousPrefix();
    if (!exists(existing, prefix + "info/0")) {
      return; // not a bmtrain4j job's store, or its rank 0 has not joined yet
    }
    existing.add(prefix + "claims/0", 1);
    throw new CollectiveException("rank 0: another process already joined this job as rank 0 and serves its store at"
        + " MASTER_PORT=" + env.masterPort() + "; every process needs its own RANK");
  }

  private String describe(int rank) {
    if (!exists(prefix + "info/" + rank)) {
      return "no record yet";
    }
    Map<String, String> info = info(rank);
    return "pid " + info.getOrDefault("pid", "?") + " on " + info.getOrDefault("host", "?");
  }

  private Map<String, String> info(int rank) {
    Map<String, String> out = new TreeMap<>();
    for (String part : get(prefix + "info/" + rank).split(" ")) {
      int eq = part.indexOf('=');
      if (eq > 0) {
        out.put(part.substring(0, eq), part.substring(eq + 1));
      }
    }
    return out;
  }

  private boolean exists(String key) {
    return exists(store, key);
  }

  private static boolean exists(Store store, String key) {
    try (StringVector keys = new StringVector(key)) {
      return store.check(keys);
    }
  }

  private void set(String key, String value) {
    setString(store, key, value);
  }

  private String get(String key) {
    return getString(store, key);
  }

  /** Sets {@code key} to {@code value} (UTF-8) in {@code store}. */
  static void setString(Store store, String key, String value) {
    try (ByteVector v = new ByteVector(value.getBytes(StandardCharsets.UTF_8))) {
      store.set(key, v);
    }
  }

  /** The UTF-8 value of {@code key}, waiting for it up to the store's timeout. */
  static String getString(Store store, String key) {
    try (ByteVector v = store.get(key)) {
      return new String(v.get(), StandardCharsets.UTF_8);
    }
  }

  private static void sleep(Duration d) {
    try {
      Thread.sleep(d.toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new CollectiveException("interrupted during the rendezvous");
    }
  }
}
