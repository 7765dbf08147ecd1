package io.bmtrain4j.examples.gpt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Compiles the example model's sources with plain javac and {@code -processorpath}, as a user
 * outside Maven would, and checks that the sharded classes are generated and compiled.
 */
class PlainJavacTest {
  @TempDir Path work;

  private static List<String> testClassPath() {
    String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    return List.of(cp.split(File.pathSeparator));
  }

  private static String entry(List<String> cp, String contains) {
    return cp.stream().filter(e -> e.contains(contains)).findFirst()
        .orElseThrow(() -> new AssertionError("no classpath entry containing " + contains + " in " + cp));
  }

  @Test
  void javacWithTheProcessorPathGeneratesTheShardedClasses() throws IOException {
    List<String> cp = testClassPath();
    String processorPath = String.join(File.pathSeparator,
        entry(cp, "bmtrain4j-processor"), entry(cp, "bmtrain4j-annotations"), entry(cp, "javapoet"));
    String classPath = cp.stream().filter(e -> !e.contains("bmtrain4j-processor")).collect(Collectors.joining(File.pathSeparator));
    Path sources = Path.of("src/main/java/io/bmtrain4j/examples/gpt");
    List<String> args = new ArrayList<>(List.of(
        "-processorpath", processorPath, "-cp", classPath,
        "-d", work.resolve("classes").toString(), "-s", work.resolve("generated").toString(),
        "-Xlint:all,-processing,-path", "-Werror")); // -path: Bytedeco jars name a javacpp.jar in their manifests
    try (Stream<Path> files = Files.list(sources)) {
      files.filter(f -> f.toString().endsWith(".java")).forEach(f -> args.add(f.toString()));
    }
    Files.createDirectories(work.resolve("classes"));
    Files.createDirectories(work.resolve("generated"));
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int rc = javac.run(null, null, err, args.toArray(new String[0]));
    assertEquals(0, rc, err.toString(StandardCharsets.UTF_8));
    Path gen = work.resolve("generated/io/bmtrain4j/examples/gpt");
    assertTrue(Files.exists(gen.resolve("DistributedGpt.java")), "DistributedGpt.java generated");
    assertTrue(Files.exists(gen.resolve("DistributedTransformerBlock.java")), "DistributedTransformerBlock.java generated");
    assertTrue(Files.exists(work.resolve("classes/io/bmtrain4j/examples/gpt/DistributedGpt.class")));
    assertTrue(Files.readString(gen.resolve("DistributedGpt.java")).contains("extends Gpt implements ShardedModule"));
  }
}
