package io.bmtrain4j.launch;

import io.bmtrain4j.dist.ProcessGuards;
import io.bmtrain4j.natives.NativeLibraries;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.Charset;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * Starts one JVM per rank on this machine, the Java counterpart of {@code torchrun --standalone --nproc_per_node N}.
 *
 * <p>Every child runs the same {@code java} binary with the launcher's classpath, its safe JVM options ({@code -D},
 * {@code -X}, {@code --add-opens}, ...; never agents or debuggers), then {@code MAIN_CLASS ARGS}. Each child gets
 * torchrun's environment: {@code RANK}, {@code LOCAL_RANK}, {@code ROLE_RANK} = its rank; {@code WORLD_SIZE},
 * {@code LOCAL_WORLD_SIZE}, {@code ROLE_WORLD_SIZE} = N; {@code GROUP_RANK=0}, {@code GROUP_WORLD_SIZE=1};
 * {@code MASTER_ADDR=127.0.0.1} and {@code MASTER_PORT}. Unlike torchrun there is no elastic agent: the rendezvous
 * store is served by rank 0 itself (as {@code DistEnvironment}/{@code DistContext} do when
 * {@code TORCHELASTIC_USE_AGENT_STORE} is unset), and a failed job is not restarted.
 *
 * <p>Every line of every child's stdout and stderr is passed on prefixed with {@code [rank N] }. When a child exits
 * with a non-zero code the launcher stops all the others (like torchrun's "fail fast" without restarts) and returns
 * that code; if all exit with 0 it returns 0.
 *
 * <p>Command line: {@code LocalLauncher --nproc N [--master-port P] MAIN_CLASS [ARGS...]}.
 */
@Command(
    name = "LocalLauncher",
    mixinStandardHelpOptions = true,
    description = "Starts N JVMs on this machine, one per rank, with torchrun's environment"
        + " (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, ...).")
public final class LocalLauncher implements Callable<Integer> {

  /** How long the other ranks get to exit after destroy() before destroyForcibly(). */
  static final Duration GRACE_PERIOD = Duration.ofSeconds(5);

  /** How long to wait for the output readers once the children have exited (a grandchild may hold the pipe). */
  private static final Duration DRAIN_TIMEOUT = Duration.ofSeconds(5);

  @Spec
  CommandSpec commandSpec;

  @Option(names = "--nproc", required = true, paramLabel = "N", description = "Number of ranks (JVMs) to start, at least 1.")
  int nproc;

  @Option(names = "--master-port", paramLabel = "P", defaultValue = "0",
      description = "Port of the rendezvous store served by rank 0; 0 (default) picks a free one.")
  int masterPort;

  @Parameters(index = "0", paramLabel = "MAIN_CLASS", description = "Main class of every rank.")
  String mainClass;

  @Parameters(index = "1..*", paramLabel = "ARGS", description = "Arguments of every rank's main method.")
  List<String> args = new ArrayList<>();

  public static void main(String[] args) {
    System.exit(run(args, new PrintWriter(System.out, true), new PrintWriter(System.err, true)));
  }

  /** Parses {@code args}, launches, and returns the exit code; usage errors go to {@code err} with code 2. */
  static int run(String[] args, PrintWriter out, PrintWriter err) {
    CommandLine cl = new CommandLine(new LocalLauncher());
    // Everything after MAIN_CLASS belongs to the ranks, even when it looks like an option.
    cl.setStopAtPositional(true);
    cl.setOut(out);
    cl.setErr(err);
    return cl.execute(args);
  }

  @Override
  public Integer call() {
    if (nproc < 1) {
      throw new CommandLine.ParameterException(commandSpec.commandLine(),
          "--nproc must be at least 1, got " + nproc);
    }
    if (masterPort < 0 || masterPort > 65535) {
      throw new CommandLine.ParameterException(commandSpec.commandLine(),
          "--master-port must be in 0..65535 (0 = pick a free one), got " + masterPort);
    }
    return launch(new LaunchSpec(nproc, masterPort, mainClass, args, Map.of(), null));
  }

  /**
   * Starts {@code spec.nproc()} JVMs, waits for them, and returns the exit code of the first rank that failed, or 0.
   * If the calling thread is interrupted, the children are stopped, the interrupt status is kept and 130 is returned.
   *
   * @throws UncheckedIOException if a child JVM cannot be started (the ones already started are stopped)
   */
  public static int launch(LaunchSpec spec) {
    int n = spec.nproc();
    int port = spec.masterPort() == 0 ? freePort() : spec.masterPort();
    // Unpack and load libtorch once here, before N ranks start together (see [Note: native cache]).
    NativeLibraries.load();
    List<String> command = childCommand(spec);
    // One output for all readers, serialised: lines from different ranks never interleave within a line.
    RankOutput output = spec.output() == null ? RankOutput.console() : RankOutput.lines(spec.output());
    Consumer<String> sink = output::line;

    List<Process> procs = new ArrayList<>();
    List<Thread> readers = new ArrayList<>();
    // If the launcher itself is killed (SIGTERM, Ctrl-C), don't leave orphaned ranks behind.
    Thread hook = new Thread(() -> stop(procs), "local-launcher-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    try {
      BlockingQueue<int[]> exits = new LinkedBlockingQueue<>();
      for (int rank = 0; rank < n; rank++) {
        ProcessBuilder pb = new ProcessBuilder(command);
        Map<String, String> env = pb.environment();
        env.putAll(spec.environment());
        // A launcher started under torchrun must not make its ranks look for torchrun's agent store.
        env.remove("TORCHELASTIC_USE_AGENT_STORE");
        env.putAll(rankEnvironment(rank, n, port));
        env.put(Terminal.ENV, output.isTerminal() ? "1" : "0");
        env.put(ProcessGuards.LAUNCHER_PID_ENV, String.valueOf(ProcessHandle.current().pid()));
        Process p;
        try {
          p = pb.start();
        } catch (IOException e) {
          throw new UncheckedIOException("cannot start rank " + rank + ": " + String.join(" ", command), e);
        }
        synchronized (procs) {
          procs.add(p);
        }
        // Ranks don't read stdin; a closed pipe gives them EOF instead of sharing ours.
        closeQuietly(p);
        String prefix = "[rank " + rank + "] ";
        readers.add(startReader(p.getInputStream(), prefix, output, "rank-" + rank + "-stdout"));
        readers.add(startReader(p.getErrorStream(), prefix, output, "rank-" + rank + "-stderr"));
        int r = rank;
        p.onExit().thenAccept(done -> exits.add(new int[] {r, done.exitValue()}));
      }

      int result = 0;
      for (int remaining = n; remaining > 0; remaining--) {
        int[] exit = exits.take();
        if (exit[1] != 0 && result == 0) {
          result = exit[1];
          sink.accept("launcher: rank " + exit[0] + " exited with code " + exit[1] + "; stopping the other ranks");
          stop(procs);
        }
      }
      joinReaders(readers);
      return result;
    } catch (InterruptedException e) {
      stop(procs);
      Thread.currentThread().interrupt();
      return 130;
    } catch (RuntimeException | Error e) {
      stop(procs);
      throw e;
    } finally {
      try {
        Runtime.getRuntime().removeShutdownHook(hook);
      } catch (IllegalStateException shuttingDown) {
        // The hook is running or about to: nothing left to remove.
      }
    }
  }

  /** torchrun's per-rank environment for a single node of {@code world} ranks (tests start ranks by hand with it). */
  public static Map<String, String> rankEnvironment(int rank, int world, int port) {
    return Map.of(
        "RANK", String.valueOf(rank),
        "WORLD_SIZE", String.valueOf(world),
        "LOCAL_RANK", String.valueOf(rank),
        "LOCAL_WORLD_SIZE", String.valueOf(world),
        "GROUP_RANK", "0",
        "GROUP_WORLD_SIZE", "1",
        "ROLE_RANK", String.valueOf(rank),
        "ROLE_WORLD_SIZE", String.valueOf(world),
        "MASTER_ADDR", "127.0.0.1",
        "MASTER_PORT", String.valueOf(port));
  }

  /** {@code java [safe JVM options] -cp CLASSPATH MAIN_CLASS ARGS}. */
  static List<String> childCommand(LaunchSpec spec) {
    List<String> cmd = new ArrayList<>();
    cmd.add(javaBinary());
    List<String> jvmOptions = inheritableJvmOptions(ManagementFactory.getRuntimeMXBean().getInputArguments());
    cmd.addAll(jvmOptions);
    cmd.addAll(javacppProperties(jvmOptions));
    cmd.add("-cp");
    cmd.add(classPath());
    cmd.add(spec.mainClass());
    cmd.addAll(spec.args());
    return cmd;
  }

  /**
   * The classpath the ranks need: the launcher's {@code java.class.path}, preceded by the URLs of
   * the context class loader when that is a {@code URLClassLoader}. Hosts such as Maven's
   * {@code exec:java} load the application there, while {@code java.class.path} holds only the
   * host's own boot jars.
   */
  static String classPath() {
    List<String> entries = new ArrayList<>();
    for (ClassLoader c = Thread.currentThread().getContextClassLoader(); c != null; c = c.getParent()) {
      if (c instanceof java.net.URLClassLoader) {
        for (java.net.URL u : ((java.net.URLClassLoader) c).getURLs()) {
          if ("file".equals(u.getProtocol())) {
            try {
              entries.add(java.nio.file.Path.of(u.toURI()).toString());
            } catch (java.net.URISyntaxException e) {
              entries.add(u.getPath());
            }
          }
        }
      }
    }
    entries.add(System.getProperty("java.class.path"));
    return String.join(java.io.File.pathSeparator, entries);
  }

  /**
   * The launcher's JVM options that make sense in every rank: system properties, -X/-XX options and module access
   * flags. Agents and debuggers are dropped: N JVMs cannot share one debug port or agent output.
   */
  static List<String> inheritableJvmOptions(List<String> inputArguments) {
    List<String> kept = new ArrayList<>();
    for (String a : inputArguments) {
      boolean debugOrAgent = a.startsWith("-agentlib") || a.startsWith("-agentpath") || a.startsWith("-javaagent")
          || a.contains("jdwp") || a.equals("-Xdebug") || a.startsWith("-Xrun");
      // jdk.module.* properties are the JVM's internal spelling of --add-opens etc. and are rejected as -D.
      boolean moduleProperty = a.startsWith("-Djdk.module.");
      boolean moduleAccess = a.startsWith("--add-opens=") || a.startsWith("--add-exports=")
          || a.startsWith("--add-reads=") || a.startsWith("--enable-native-access=") || a.equals("--enable-preview");
      if (!debugOrAgent && !moduleProperty && (a.startsWith("-D") || a.startsWith("-X") || moduleAccess)) {
        kept.add(a);
      }
    }
    return kept;
  }

  /**
   * JavaCPP's settings that reached the launcher as system properties other than JVM options
   * (Maven's {@code -D}, for one, under {@code exec:java}): every rank must unpack into the same
   * native cache and load the same platform's natives as the launcher did.
   */
  static List<String> javacppProperties(List<String> alreadyPassed) {
    List<String> out = new ArrayList<>();
    for (String name : List.of("org.bytedeco.javacpp.cachedir", "org.bytedeco.javacpp.platform.extension",
        "org.bytedeco.javacpp.platform")) {
      String value = System.getProperty(name);
      boolean passed = alreadyPassed.stream().anyMatch(a -> a.startsWith("-D" + name + "="));
      if (value != null && !passed) {
        out.add("-D" + name + "=" + value);
      }
    }
    return out;
  }

  /** The launcher's own {@code java} executable, so every rank runs the same JDK. */
  static String javaBinary() {
    Path javaHomeBin = Path.of(System.getProperty("java.home"), "bin", "java");
    if (Files.isExecutable(javaHomeBin)) {
      return javaHomeBin.toString();
    }
    return ProcessHandle.current().info().command()
        .orElseThrow(() -> new IllegalStateException("cannot find the java executable: " + javaHomeBin + " is missing"));
  }

  /**
   * A port that was free a moment ago. Another process may take it before rank 0 binds it; torchrun has the same
   * race and so does every launcher that lets the server bind later.
   */
  static int freePort() {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot find a free port for MASTER_PORT", e);
    }
  }

  private static Thread startReader(InputStream in, String prefix, RankOutput output, String name) {
    Thread t = new Thread(() -> {
      try (BufferedReader r = new BufferedReader(new InputStreamReader(in, Charset.defaultCharset()))) {
        forward(r, prefix, output);
      } catch (IOException e) {
        // The stream closes when the child is killed; there is nothing more to read.
      }
    }, name);
    // Daemon: a grandchild that keeps the pipe open must not keep the launcher's JVM alive.
    t.setDaemon(true);
    t.start();
    return t;
  }

  /**
   * Reads a rank's stream as a terminal would show it: a newline ends a line; a carriage return
   * starts the line over (a progress bar redrawing itself), and whatever the line holds when the
   * rank pauses is passed on as a {@link RankOutput#redraw}.
   */
  static void forward(BufferedReader r, String prefix, RankOutput output) throws IOException {
    StringBuilder current = new StringBuilder();
    boolean overwritten = false; // the current line has been started over at least once
    boolean startOver = false;   // a carriage return came; the next character starts the line over
    String shown = null;         // the last redraw passed on
    int c;
    while ((c = r.read()) != -1) {
      if (c == '\n') {
        output.line(prefix + current);
        current.setLength(0);
        overwritten = false;
        startOver = false;
        shown = null;
        continue;
      }
      if (c == '\r') {
        startOver = true;
        overwritten = true;
      } else {
        if (startOver) {
          current.setLength(0);
          startOver = false;
        }
        current.append((char) c);
      }
      if (overwritten && !r.ready() && current.length() > 0) {
        String now = prefix + current;
        if (!now.equals(shown)) {
          output.redraw(prefix, now);
          shown = now;
        }
      }
    }
    if (current.length() > 0) {
      output.line(prefix + current);
    }
  }

  private static void joinReaders(List<Thread> readers) throws InterruptedException {
    long deadline = System.nanoTime() + DRAIN_TIMEOUT.toNanos();
    for (Thread t : readers) {
      long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
      if (left > 0) {
        t.join(left);
      }
    }
  }

  private static void closeQuietly(Process p) {
    try {
      p.getOutputStream().close();
    } catch (IOException ignored) {
      // Only stdin of the child; nothing depends on it.
    }
  }

  /**
   * Stops every child still alive and its descendants: destroy() (SIGTERM) first so ranks can run their shutdown
   * hooks, then destroyForcibly() for whatever is still alive after {@link #GRACE_PERIOD}.
   */
  static void stop(List<Process> procs) {
    List<ProcessHandle> handles = new ArrayList<>();
    synchronized (procs) {
      for (Process p : procs) {
        if (p.isAlive()) {
          // Collect descendants before the parent dies: afterwards they are re-parented and can't be found.
          p.descendants().forEach(handles::add);
          handles.add(p.toHandle());
        }
      }
    }
    if (handles.isEmpty()) {
      return;
    }
    handles.forEach(ProcessHandle::destroy);
    long deadline = System.nanoTime() + GRACE_PERIOD.toNanos();
    for (ProcessHandle h : handles) {
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        break;
      }
      try {
        h.onExit().get(left, TimeUnit.NANOSECONDS);
      } catch (TimeoutException | ExecutionException e) {
        break;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    for (ProcessHandle h : handles) {
      if (h.isAlive()) {
        h.destroyForcibly();
      }
    }
  }
}
