package io.bmtrain4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;

/**
 * Runs the Python reference scripts (real PyTorch and Hugging Face {@code transformers}) that tests
 * compare against. The interpreter is {@code BMTRAIN4J_REFERENCE_PYTHON}, else the project's
 * {@code .venv-reference} that {@code .ci/run} makes. Without one the tests are skipped, unless
 * {@code BMTRAIN4J_REQUIRE_REFERENCE} is set (CI sets it), where they fail instead.
 */
public final class PythonReference {
  private PythonReference() {}

  /** The interpreter with torch and transformers; skips (or fails, in CI) the calling test without one. */
  public static Path python() {
    String configured = System.getenv("BMTRAIN4J_REFERENCE_PYTHON");
    Path python = configured != null ? Path.of(configured) : projectRoot().resolve(".venv-reference/bin/python");
    if (Files.isExecutable(python)) {
      return python;
    }
    String why = "no Python reference interpreter at " + python + " (.ci/run makes .venv-reference with torch and transformers)";
    if (System.getenv("BMTRAIN4J_REQUIRE_REFERENCE") != null) {
      fail(why);
    }
    Assumptions.abort(why);
    return null;
  }

  /** Runs {@code script} (a test resource under {@code hf/}) with {@code args}; fails the test with its output unless it exits 0. */
  public static String run(String script, String... args) throws IOException, InterruptedException {
    Path file = projectRoot().resolve("examples/src/test/resources/hf").resolve(script);
    List<String> cmd = new ArrayList<>(List.of(python().toString(), file.toString()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().put("TRANSFORMERS_VERBOSITY", "error");
    pb.environment().put("HF_HUB_OFFLINE", "1");
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(300, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      fail(script + " did not finish within 300 s: " + out);
    }
    assertEquals(0, p.exitValue(), script + " " + String.join(" ", args) + " failed:\n" + out);
    return out;
  }

  /** The repository root: the working directory of a module's tests is the module. */
  static Path projectRoot() {
    Path here = Path.of("").toAbsolutePath();
    return Files.isDirectory(here.resolve("examples")) ? here : here.getParent();
  }
}
