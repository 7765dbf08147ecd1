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
}
