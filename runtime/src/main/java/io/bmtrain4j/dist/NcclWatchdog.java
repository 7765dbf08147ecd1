package io.bmtrain4j.dist;

import java.time.Duration;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.function.IntConsumer;
import java.util.function.Supplier;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * Turns a dead or silent peer into an error instead of a hang. NCCL kernels of a collective whose
 * peer has gone spin forever, and so does every host call that later synchronises with the GPU.
 * A daemon thread polls the oldest collective in flight (in issue order; with a separate reduce
 * stream a later one may finish first and waits in the queue until the oldest has) and
 * NCCL's asynchronous error; past the timeout it reports the collective and the rank, aborts the
 * communicator and ends the process, as PyTorch's ProcessGroupNCCL watchdog does by default
 * ({@code TORCH_NCCL_ASYNC_ERROR_HANDLING=3}). The launcher (torchrun or ours) then stops the
 * other ranks.
 */
final class NcclWatchdog implements AutoCloseable {
  /** Exit status of a rank ended by the watchdog. */
  static final int EXIT_STATUS = 75;

  /** A collective as the watchdog sees it ({@link NcclWork}; tests use their own). */
  interface Watched {
    /** True once the collective has completed on the GPU. */
    boolean poll();

    long issuedNanos();

    /** For the message, e.g. "all-reduce (collective #6)". */
    String describe();

    /** Makes a later {@code await()} rethrow {@code e}. */
    void fail(RuntimeException e);
  }

  private final ConcurrentLinkedDeque<Watched> inFlight = new ConcurrentLinkedDeque<>();
  private final Thread thread;
  private final IntConsumer exit;
  private volatile boolean stopped;

  /** Ends the process with {@link Runtime#halt} once the communicator is aborted. */
  NcclWatchdog(String rankName, int device, Duration timeout, Supplier<String> asyncError, Runnable abort) {
    this(rankName, device, timeout, asyncError, abort, status -> Runtime.getRuntime().halt(status));
  }

  /** {@code device} &lt; 0: no CUDA device to select (tests); {@code exit} receives the status. */
  NcclWatchdog(String rankName, int device, Duration timeout, Supplier<String> asyncError, Runnable abort,
      IntConsumer exit) {
    this.exit = exit;
    long timeoutNanos = timeout.toNanos();
    thread = new Thread(() -> {
      if (device >= 0) {
        torch_cuda.set_device((byte) device);
      }
      while (!stopped) {
        Watched oldest;
        String error;
        try {
          while ((oldest = inFlight.peekFirst()) != null && oldest.poll()) {
            inFlight.pollFirst();
          }
          error = asyncError.get();
        } catch (RuntimeException e) {
          // A watchdog that dies silently would turn the next dead peer into a hang: report and go
          // on, and still give up once the oldest collective is past the timeout.
          System.err.println("bmtrain4j: the NCCL watchdog could not poll: " + e);
          Watched stuck = inFlight.peekFirst();
          if (overdue(stuck, timeoutNanos)) {
            giveUp("NCCL " + stuck.describe() + " could not be checked for " + timeout.toSeconds() + " s on " + rankName
                + ": " + e, stuck, abort);
            return;
          }
          sleep(1000);
          continue;
        }
        String problem = null;
        if (error != null) {
          problem = "NCCL reported an asynchronous error on " + rankName + ": " + error;
        } else if (overdue(oldest, timeoutNanos)) {
          problem = "NCCL " + oldest.describe() + " did not complete within "
              + timeout.toSeconds() + " s on " + rankName
              + ": a peer died or stopped issuing collectives (every rank must issue the same ones in the same order)."
              + " Raise InitOptions.timeout if a step legitimately takes longer.";
        }
        if (problem != null) {
          giveUp(problem, oldest, abort);
          return;
        }
        sleep(20);
      }
    }, "bmtrain4j-nccl-watchdog");
    thread.setDaemon(true);
    thread.start();
  }

  private static boolean overdue(Watched work, long timeoutNanos) {
    return work != null && System.nanoTime() - work.issuedNanos() > timeoutNanos;
  }

  void track(Watched work) {
    inFlight.addLast(work);
  }

  private void giveUp(String problem, Watched oldest, Runnable abort) {
    CollectiveException e = new CollectiveException(problem);
    if (oldest != null) {
      oldest.fail(e);
    }
    System.err.println("bmtrain4j: " + problem + " Aborting the communicator and exiting with status " + EXIT_STATUS + ".");
    System.err.flush();
    // ncclCommAbort releases the spinning kernels; it is given a few seconds, then the process ends
    // regardless, since the host thread may be stuck in a synchronising call.
    Thread aborter = new Thread(abort, "bmtrain4j-nccl-abort");
    aborter.setDaemon(true);
    aborter.start();
    try {
      aborter.join(5000);
    } catch (InterruptedException ignored) {
      Thread.currentThread().interrupt();
    }
    exit.accept(EXIT_STATUS);
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Stops polling and frees the events of collectives that have completed (all of them when the
   * caller synchronised the stream first). Waits for a watchdog that is giving up, so the
   * communicator is not destroyed while it is being aborted.
   */
  @Override
  public void close() {
    stopped = true;
    try {
      thread.join(7000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    try {
      Watched w;
      while ((w = inFlight.peekFirst()) != null && w.poll()) {
        inFlight.pollFirst();
      }
    } catch (RuntimeException e) {
      // A sticky CUDA error: the events are lost with the context anyway; let the caller destroy the communicator.
      System.err.println("bmtrain4j: the NCCL watchdog could not free finished events: " + e);
    }
  }
}
