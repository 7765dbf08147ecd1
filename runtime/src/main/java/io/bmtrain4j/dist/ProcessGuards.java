package io.bmtrain4j.dist;

import java.time.Duration;
import java.util.Map;
import java.util.Optional;

/**
 * Watches that end a rank's process when waiting can no longer help, as PyTorch's NCCL watchdog
 * does for collectives: libtorch's store and process-group constructors block in native code,
 * where no Java timeout or interrupt reaches them. Only for whole processes
 * ({@code Bmt.initDistributed}), never for ranks run as threads in one JVM.
 */
public final class ProcessGuards {
  /** The local launcher's pid, set for each rank it starts: the rank ends when the launcher does. */
  public static final String LAUNCHER_PID_ENV = "BMTRAIN4J_LAUNCHER_PID";

  /** Exit status of a rank ended by a guard (EX_TEMPFAIL, the NCCL watchdog's too). */
  public static final int EXIT_STATUS = 75;

  /**
   * How long past the timeout the rendezvous may run before the process is ended: the wait for
   * peers itself gives up at the timeout, and building the process group (NCCL's init on many
   * ranks) needs some time after the last peer arrives.
   */
  static final Duration MARGIN = Duration.ofSeconds(30);

  private ProcessGuards() {}

  /**
   * Ends this process with a message naming the rank if {@code rendezvous} has not returned
   * within {@code timeout} plus {@link #MARGIN} (a store that accepts connections and never
   * answers, a peer that hangs in the process group's handshake). Returns what {@code rendezvous} returns.
   */
  public static <T> T withinDeadline(String who, Duration timeout, java.util.function.Supplier<T> rendezvous) {
    Thread guard = new Thread(() -> {
      try {
        Thread.sleep(timeout.plus(MARGIN).toMillis());
      } catch (InterruptedException finished) {
        return;
      }
      System.err.println(who + ": the rendezvous did not finish within " + timeout.plus(MARGIN).toSeconds()
          + " s (the timeout plus " + MARGIN.toSeconds() + " s): a peer or the store at MASTER_ADDR:MASTER_PORT is not"
          + " answering; ending this process (status " + EXIT_STATUS + ")");
      System.err.flush();
      Runtime.getRuntime().halt(EXIT_STATUS);
    }, "bmt-rendezvous-deadline");
    guard.setDaemon(true);
    guard.start();
    try {
      return rendezvous.get();
    } finally {
      guard.interrupt();
    }
  }

  /**
   * Ends this rank when the process that launched it ends: the local launcher (its pid in
   * {@link #LAUNCHER_PID_ENV}) or torchrun's agent (the parent, when {@code TORCHELASTIC_RUN_ID}
   * is set). A launcher killed with SIGKILL cannot stop its ranks itself; without this they would
   * train on, and write checkpoints, with nobody to see them.
   */
  public static void exitWithLauncher(String who, Map<String, String> env) {
    Optional<ProcessHandle> launcher = Optional.empty();
    String pid = env.get(LAUNCHER_PID_ENV);
    if (pid != null) {
      try {
        launcher = ProcessHandle.of(Long.parseLong(pid.trim()));
        if (launcher.isEmpty()) {
          halt(who, "its launcher (pid " + pid + ") has already exited");
        }
      } catch (NumberFormatException e) {
        throw new EnvironmentException(LAUNCHER_PID_ENV + "=" + pid + " is not a process id");
      }
    } else if (env.containsKey("TORCHELASTIC_RUN_ID")) {
      launcher = ProcessHandle.current().parent();
    }
    launcher.ifPresent(h -> h.onExit().thenRun(() -> halt(who, "its launcher (pid " + h.pid() + ") has exited")));
  }

  private static void halt(String who, String why) {
    System.err.println(who + ": " + why + "; ending this rank (status " + EXIT_STATUS + ")");
    System.err.flush();
    Runtime.getRuntime().halt(EXIT_STATUS);
  }
}
