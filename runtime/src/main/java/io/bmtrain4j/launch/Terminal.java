package io.bmtrain4j.launch;

/**
 * Whether this process's output reaches a person at a terminal, so a progress bar may redraw in
 * place, or a log, where plain lines at intervals read better.
 *
 * <p>A rank's stdout is a pipe to its launcher, so the rank cannot see for itself; the local
 * launcher tells it through {@link #ENV}. Without that variable (torchrun, Slurm, one process)
 * the JVM's console decides.
 */
public final class Terminal {
  /** Set by the local launcher for every rank: {@code 1} when the launcher prints to a terminal, else {@code 0}. */
  public static final String ENV = "BMTRAIN4J_TERMINAL";

  private Terminal() {}

  public static boolean isInteractive() {
    String told = System.getenv(ENV);
    if (told != null) {
      return told.equals("1");
    }
    java.io.Console console = System.console();
    if (console == null) {
      return false;
    }
    // From JDK 22 a console exists even when output is redirected; isTerminal() tells (JDK-8308591).
    try {
      return (Boolean) java.io.Console.class.getMethod("isTerminal").invoke(console);
    } catch (ReflectiveOperationException olderJdk) {
      return true; // before JDK 22, a console means a terminal on both ends
    }
  }
}
