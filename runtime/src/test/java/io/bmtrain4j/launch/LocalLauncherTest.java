package io.bmtrain4j.launch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

class LocalLauncherTest {

  private static final Pattern PREFIXED = Pattern.compile("\\[rank (\\d+)\\] (.*)");
  private static final Pattern ENV_LINE =
      Pattern.compile("RANK=(\\d+) WORLD_SIZE=(\\d+) LOCAL_RANK=(\\d+) MASTER_PORT=(\\d+)");
  private static final Pattern PID_LINE = Pattern.compile("pid=(\\d+)");

  @Test
  @Timeout(60)
  void allRanksGetDistinctRanksSameWorldAndPortAndPrefixedLines() {
    int n = 3;
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    int code = LocalLauncher.launch(LaunchSpec.of(n, EchoRank.class.getName(), "ok", "50").withOutput(lines::add));
    assertEquals(0, code, () -> String.join("\n", lines));

    Set<Integer> ranks = new HashSet<>();
    Set<String> worlds = new HashSet<>();
    Set<String> ports = new HashSet<>();
    Map<Integer, Integer> outLines = new HashMap<>();
    Map<Integer, Integer> errLines = new HashMap<>();
    for (String line : lines) {
      Matcher m = PREFIXED.matcher(line);
      assertTrue(m.matches(), () -> "line without a rank prefix: " + line);
      int prefixRank = Integer.parseInt(m.group(1));
      String body = m.group(2);
      Matcher env = ENV_LINE.matcher(body);
      if (env.matches()) {
        int rank = Integer.parseInt(env.group(1));
        assertEquals(prefixRank, rank, line);
        assertEquals(env.group(1), env.group(3), "LOCAL_RANK == RANK on one node");
        assertTrue(ranks.add(rank), "rank reported twice: " + rank);
        worlds.add(env.group(2));
        ports.add(env.group(4));
      } else if (body.startsWith("out ") || body.startsWith("err ")) {
        // A whole, untorn line of this rank: the same rank all along, one line's worth of repeats.
        String expectedTail = "of rank " + prefixRank + " ";
        assertTrue(body.endsWith(expectedTail), () -> "torn or misattributed line: " + line);
        assertEquals(20, body.split("of rank ", -1).length - 1, () -> "torn line: " + line);
        (body.startsWith("out ") ? outLines : errLines).merge(prefixRank, 1, Integer::sum);
      }
    }
    assertEquals(Set.of(0, 1, 2), ranks);
    assertEquals(Set.of(String.valueOf(n)), worlds);
    assertEquals(1, ports.size(), "one MASTER_PORT for all ranks: " + ports);
    assertNotEquals("0", ports.iterator().next());
    for (int r = 0; r < n; r++) {
      assertEquals(50, outLines.getOrDefault(r, 0), "stdout lines of rank " + r);
      assertEquals(50, errLines.getOrDefault(r, 0), "stderr lines of rank " + r);
    }
  }

  @Test
  @Timeout(60)
  void givenMasterPortIsPassedOn() {
    int port = LocalLauncher.freePort();
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    int code = LocalLauncher.launch(
        LaunchSpec.of(2, EchoRank.class.getName(), "ok").withMasterPort(port).withOutput(lines::add));
    assertEquals(0, code, () -> String.join("\n", lines));
    long withPort = lines.stream().filter(l -> l.endsWith("MASTER_PORT=" + port)).count();
    assertEquals(2, withPort, () -> String.join("\n", lines));
  }

  @Test
  @Timeout(60)
  void failingRankStopsTheOthersAndItsCodeIsReturned() {
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    long start = System.nanoTime();
    int code = LocalLauncher.launch(
        LaunchSpec.of(2, EchoRank.class.getName(), "fail", "1", "3").withOutput(lines::add));
    Duration took = Duration.ofNanos(System.nanoTime() - start);

    assertEquals(3, code, () -> String.join("\n", lines));
    assertTrue(took.compareTo(Duration.ofSeconds(15)) < 0, "took " + took);
    assertTrue(lines.contains("launcher: rank 1 exited with code 3; stopping the other ranks"),
        () -> String.join("\n", lines));
    long pid0 = lines.stream()
        .map(PREFIXED::matcher).filter(Matcher::matches).filter(m -> m.group(1).equals("0"))
        .map(m -> PID_LINE.matcher(m.group(2))).filter(Matcher::matches)
        .mapToLong(m -> Long.parseLong(m.group(1))).findFirst()
        .orElseThrow(() -> new AssertionError("rank 0 printed no pid:\n" + String.join("\n", lines)));
    assertFalse(ProcessHandle.of(pid0).map(ProcessHandle::isAlive).orElse(false), "rank 0 (pid " + pid0 + ") still alive");
  }

  @Test
  void picocliRejectsZeroNproc() {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    int code = LocalLauncher.run(new String[] {"--nproc", "0", EchoRank.class.getName()},
        new PrintWriter(out, true), new PrintWriter(err, true));
    assertEquals(2, code, err::toString);
    assertTrue(err.toString().contains("--nproc"), err::toString);
    assertTrue(out.toString().isEmpty(), out::toString);
  }

  @Test
  void picocliRequiresMainClassAndPassesOptionLikeArgsToTheRanks() {
    StringWriter err = new StringWriter();
    int code = LocalLauncher.run(new String[] {"--nproc", "2"}, new PrintWriter(new StringWriter(), true),
        new PrintWriter(err, true));
    assertEquals(2, code, err::toString);
    assertTrue(err.toString().contains("MAIN_CLASS"), err::toString);
  }

  @Test
  void onlySafeJvmOptionsAreInherited() {
    List<String> kept = LocalLauncher.inheritableJvmOptions(List.of(
        "-Xmx128m", "-Xss4m", "-XX:+UseSerialGC", "-Dfoo=bar", "-Djdk.module.addopens.0=x",
        "-agentlib:jdwp=transport=dt_socket,server=y,address=5005", "-javaagent:/tmp/a.jar",
        "-Xrunjdwp:transport=dt_socket", "-Xdebug", "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "--add-modules=ALL-DEFAULT", "-ea"));
    assertEquals(List.of("-Xmx128m", "-Xss4m", "-XX:+UseSerialGC", "-Dfoo=bar",
        "--add-opens=java.base/java.lang=ALL-UNNAMED"), kept);
  }

  @Test
  void rankEnvironmentIsTorchrunsForOneNode() {
    Map<String, String> env = LocalLauncher.rankEnvironment(2, 4, 29500);
    assertEquals("2", env.get("RANK"));
    assertEquals("4", env.get("WORLD_SIZE"));
    assertEquals("2", env.get("LOCAL_RANK"));
    assertEquals("4", env.get("LOCAL_WORLD_SIZE"));
    assertEquals("0", env.get("GROUP_RANK"));
    assertEquals("2", env.get("ROLE_RANK"));
    assertEquals("127.0.0.1", env.get("MASTER_ADDR"));
    assertEquals("29500", env.get("MASTER_PORT"));
    assertFalse(env.containsKey("TORCHELASTIC_USE_AGENT_STORE"));
  }

  /** What a rank's stream turns into: lines, and the redraws of a line started over with a carriage return. */
  private static List<String> forwarded(String stream) throws java.io.IOException {
    List<String> events = new ArrayList<>();
    RankOutput recorder = new RankOutput() {
      @Override
      public void line(String prefixedLine) {
        events.add("line " + prefixedLine);
      }

      @Override
      public void redraw(String rankPrefix, String prefixedLine) {
        events.add("redraw " + prefixedLine);
      }

      @Override
      public boolean isTerminal() {
        return true;
      }
    };
    // A reader that says "nothing more for now" after each carriage-return segment, as a pipe does between redraws.
    java.io.BufferedReader slow = new java.io.BufferedReader(new java.io.StringReader("")) {
      private int pos;

      @Override
      public int read() {
        return pos < stream.length() ? stream.charAt(pos++) : -1;
      }

      @Override
      public boolean ready() {
        return pos < stream.length() && stream.charAt(pos) != '\r';
      }
    };
    LocalLauncher.forward(slow, "[rank 0] ", recorder);
    return events;
  }

  @Test
  void aProgressBarIsForwardedAsRedrawsThenItsFinalLine() throws Exception {
    assertEquals(List.of("line [rank 0] hello", "redraw [rank 0] 10%", "redraw [rank 0] 50%", "line [rank 0] 100%",
        "line [rank 0] bye"), forwarded("hello\n\r10%\r50%\r100%\nbye\n"));
    assertEquals(List.of("line [rank 0] windows line", "line [rank 0] unterminated"),
        forwarded("windows line\r\nunterminated"));
  }

  @Test
  void withoutATerminalRedrawsAreThinnedToOneLinePerRankAndInterval() {
    List<String> lines = new ArrayList<>();
    RankOutput out = RankOutput.lines(lines::add);
    for (int i = 0; i < 100; i++) {
      out.redraw("[rank 0] ", "[rank 0] bar " + i);
      out.redraw("[rank 1] ", "[rank 1] bar " + i);
    }
    out.line("[rank 0] done");
    assertEquals(List.of("[rank 0] bar 0", "[rank 1] bar 0", "[rank 0] done"), lines);
  }

  @Test
  void onATerminalABarIsRedrawnInPlaceBelowOtherRanksLines() {
    java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
    RankOutput out = RankOutput.terminal(new java.io.PrintStream(bytes, true, java.nio.charset.StandardCharsets.UTF_8));
    out.redraw("[rank 0] ", "[rank 0] bar 1");
    out.redraw("[rank 0] ", "[rank 0] bar 2");
    out.line("[rank 1] note");
    out.line("[rank 0] bar done");
    assertEquals("\r[rank 0] bar 1\033[K\r[rank 0] bar 2\033[K"
        + "\r[rank 1] note\033[K\n[rank 0] bar 2"
        + "\r[rank 0] bar done\033[K\n", bytes.toString(java.nio.charset.StandardCharsets.UTF_8));
  }

  @Test
  void ranksAreToldWhetherTheLauncherIsOnATerminalAndGetItsNativeCache() {
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    String before = System.getProperty("org.bytedeco.javacpp.cachedir");
    String cache = io.bmtrain4j.natives.NativeLibraries.cacheDirectory().toString();
    try {
      System.setProperty("org.bytedeco.javacpp.cachedir", cache);
      int code = LocalLauncher.launch(LaunchSpec.of(1, PrintEnvironment.class.getName()).withOutput(lines::add));
      assertEquals(0, code, () -> String.join("\n", lines));
    } finally {
      if (before == null) {
        System.clearProperty("org.bytedeco.javacpp.cachedir");
      } else {
        System.setProperty("org.bytedeco.javacpp.cachedir", before);
      }
    }
    assertTrue(lines.contains("[rank 0] " + Terminal.ENV + "=0"), () -> String.join("\n", lines));
    assertTrue(lines.contains("[rank 0] cachedir=" + cache), () -> String.join("\n", lines));
  }

  /** A rank that prints what the launcher told it. */
  public static final class PrintEnvironment {
    public static void main(String[] args) {
      System.out.println(Terminal.ENV + "=" + System.getenv(Terminal.ENV));
      System.out.println("cachedir=" + System.getProperty("org.bytedeco.javacpp.cachedir"));
    }
  }
}
