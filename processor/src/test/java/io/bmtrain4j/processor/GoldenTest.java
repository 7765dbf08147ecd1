package io.bmtrain4j.processor;

import static com.google.testing.compile.CompilationSubject.assertThat;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.google.testing.compile.Compilation;
import com.google.testing.compile.JavaFileObjects;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import javax.tools.JavaFileObject;
import org.junit.jupiter.api.Test;

/**
 * The generated sources of three models, compared byte for byte with the files under
 * {@code src/test/resources/golden}, and compiled with every lint warning an error. To accept a
 * deliberate change, run {@code mvn test -pl processor -Dbmtrain4j.updateGolden=true} and review
 * the diff.
 */
class GoldenTest {

  @Test
  void blockWithTensorAndModuleFields() throws IOException {
    Compilation compilation = Sources.compile(model("block/Block.java"));
    assertThat(compilation).succeededWithoutWarnings();
    assertGolden(compilation, "test.block.DistributedBlock");
  }

  @Test
  void gptWithBlockListCheckpointAndTiedHead() throws IOException {
    Compilation compilation =
        Sources.compile(model("gpt/GPT.java"), model("gpt/TransformerBlock.java"));
    assertThat(compilation).succeededWithoutWarnings();
    assertGolden(compilation, "test.gpt.DistributedGPT");
    assertGolden(compilation, "test.gpt.DistributedTransformerBlock");
  }

  @Test
  void overloadsGenericsVarargsNestingAndInheritance() throws IOException {
    Compilation compilation = Sources.compile(model("awkward/Outer.java"));
    assertThat(compilation).succeededWithoutWarnings();
    assertGolden(compilation, "test.awkward.DistributedOuter_Base");
    assertGolden(compilation, "test.awkward.DistributedOuter_Inner");
  }

  @Test
  void outputIsIdenticalAcrossCompilations() throws IOException {
    JavaFileObject[] sources = {
      model("gpt/GPT.java"), model("gpt/TransformerBlock.java"), model("awkward/Outer.java")
    };
    Compilation first = Sources.compile(sources);
    Compilation second = Sources.compile(sources);
    assertThat(first).succeeded();
    assertEquals(first.generatedSourceFiles().size(), second.generatedSourceFiles().size());
    for (int i = 0; i < first.generatedSourceFiles().size(); i++) {
      JavaFileObject a = first.generatedSourceFiles().get(i);
      JavaFileObject b = second.generatedSourceFiles().get(i);
      assertEquals(a.getName(), b.getName());
      assertEquals(a.getCharContent(true).toString(), b.getCharContent(true).toString(), a.getName());
    }
  }

  static JavaFileObject model(String path) {
    return JavaFileObjects.forResource("models/" + path);
  }

  static void assertGolden(Compilation compilation, String qualifiedName) throws IOException {
    String actual = compilation.generatedSourceFile(qualifiedName)
        .orElseThrow(() -> new AssertionError("not generated: " + qualifiedName
            + "; generated: " + compilation.generatedSourceFiles()))
        .getCharContent(true)
        .toString();
    String golden = "golden/" + qualifiedName.replace('.', '/') + ".java";
    if (Boolean.getBoolean("bmtrain4j.updateGolden")) {
      Path path = Path.of("src/test/resources", golden);
      Files.createDirectories(path.getParent());
      Files.writeString(path, actual, StandardCharsets.UTF_8);
      return;
    }
    String expected;
    try (InputStream in = GoldenTest.class.getClassLoader().getResourceAsStream(golden)) {
      if (in == null) {
        throw new AssertionError("missing golden file " + golden + "; generated:\n" + actual);
      }
      expected = new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
    assertEquals(expected, actual, "generated " + qualifiedName + " differs from " + golden);
    assertThat(compilation)
        .generatedSourceFile(qualifiedName)
        .hasSourceEquivalentTo(JavaFileObjects.forResource(golden));
  }
}
