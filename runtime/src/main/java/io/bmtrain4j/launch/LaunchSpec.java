package io.bmtrain4j.launch;

import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * What {@link LocalLauncher#launch(LaunchSpec)} starts: {@code nproc} JVMs running {@code mainClass} with {@code args}.
 *
 * @param nproc number of ranks (child JVMs) on this machine, at least 1
 * @param masterPort port of the rendezvous store that rank 0 serves; 0 picks a free one
 * @param mainClass fully qualified main class of every rank, found on the launcher's classpath
 * @param args arguments passed to every rank's main method
 * @param environment extra environment variables for every rank; the launcher's own variables ({@code RANK},
 *     {@code MASTER_PORT}, ...) take precedence over these
 * @param output receives every output line of every rank, already prefixed with {@code [rank N] }, and the
 *     launcher's own messages; called under a lock, one line at a time. Null: the launcher's console, where
 *     a rank's progress bar redraws in place on a terminal (see {@link RankOutput})
 */
public record LaunchSpec(
    int nproc, int masterPort, String mainClass, List<String> args, Map<String, String> environment,
    Consumer<String> output) {

  public LaunchSpec {
    if (nproc < 1) {
      throw new IllegalArgumentException("nproc must be at least 1, got " + nproc);
    }
    if (masterPort < 0 || masterPort > 65535) {
      throw new IllegalArgumentException("masterPort must be in 0..65535 (0 = pick a free one), got " + masterPort);
    }
    Objects.requireNonNull(mainClass, "mainClass");
    if (mainClass.isBlank()) {
      throw new IllegalArgumentException("mainClass must not be blank");
    }
    args = args == null ? List.of() : List.copyOf(args);
    environment = environment == null ? Map.of() : Map.copyOf(environment);
  }

  /** {@code nproc} ranks of {@code mainClass args}, a free master port, no extra environment, output to the console. */
  public static LaunchSpec of(int nproc, String mainClass, String... args) {
    return new LaunchSpec(nproc, 0, mainClass, List.of(args), Map.of(), null);
  }

  public LaunchSpec withMasterPort(int port) {
    return new LaunchSpec(nproc, port, mainClass, args, environment, output);
  }

  public LaunchSpec withArgs(List<String> newArgs) {
    return new LaunchSpec(nproc, masterPort, mainClass, newArgs, environment, output);
  }

  public LaunchSpec withEnvironment(Map<String, String> env) {
    return new LaunchSpec(nproc, masterPort, mainClass, args, env, output);
  }

  public LaunchSpec withOutput(Consumer<String> sink) {
    return new LaunchSpec(nproc, masterPort, mainClass, args, environment, sink);
  }
}
