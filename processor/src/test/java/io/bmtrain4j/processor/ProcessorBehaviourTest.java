package io.bmtrain4j.processor;

import static com.google.testing.compile.CompilationSubject.assertThat;
import static io.bmtrain4j.processor.Sources.compile;
import static io.bmtrain4j.processor.Sources.source;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.testing.compile.Compilation;
import javax.lang.model.SourceVersion;
import javax.tools.JavaFileObject;
import org.junit.jupiter.api.Test;

/** How the processor behaves around the generation: failures, inheritance, registration. */
class ProcessorBehaviourTest {
  private static final JavaFileObject BLOCK = source("Blk",
      "public class Blk {",
      "  @Distributed Tensor w;",
      "  public Tensor forward(Tensor x) { return x; }",
      "}");

  @Test
  void exceptionInsideTheProcessorBecomesAnErrorOnTheClass() {
    DistributedProcessor failing = new DistributedProcessor(type -> {
      throw new IllegalStateException("boom");
    });
    Compilation compilation = Sources.compile(failing, BLOCK);
    assertThat(compilation).failed();
    assertThat(compilation)
        .hadErrorContaining("bmtrain4j processor failed on test.Blk:"
            + " java.lang.IllegalStateException: boom")
        .inFile(BLOCK).onLineContaining("public class Blk");
  }

  @Test
  void subclassThatOnlyInheritsTheAnnotationsIsGenerated() {
    JavaFileObject sub = source("Sub",
        "public class Sub extends Blk {",
        "  public Tensor forward(Tensor x, Tensor y) { return y; }",
        "}");
    Compilation compilation = compile(BLOCK, sub);
    assertThat(compilation).succeededWithoutWarnings();
    assertThat(compilation).generatedSourceFile("test.DistributedSub");
    assertThat(compilation).generatedSourceFile("test.DistributedBlk");
  }

  @Test
  void finalSubclassThatOnlyInheritsGetsANoteNotAnError() {
    JavaFileObject sub = source("Sub", "public final class Sub extends Blk {}");
    Compilation compilation = compile(BLOCK, sub);
    assertThat(compilation).succeeded();
    assertThat(compilation)
        .hadNoteContaining("no DistributedSub is generated for test.Sub, which only inherits")
        .inFile(sub).onLineContaining("class Sub");
    assertFalse(compilation.generatedSourceFile("test.DistributedSub").isPresent());
  }

  @Test
  void generatedClassesAreNotProcessedAgain() {
    Compilation compilation = compile(BLOCK);
    assertThat(compilation).succeededWithoutWarnings();
    assertEquals(1, compilation.generatedSourceFiles().size());
  }

  @Test
  void abstractClassIsCheckedButNotGenerated() {
    JavaFileObject base = source("Base",
        "public abstract class Base {",
        "  @Distributed Tensor w;",
        "  public abstract Tensor forward(Tensor x);",
        "}");
    JavaFileObject impl = source("Impl",
        "public class Impl extends Base {",
        "  @Distributed Tensor v;",
        "  public Tensor forward(Tensor x) { return x; }",
        "}");
    Compilation compilation = compile(base, impl);
    assertThat(compilation).succeededWithoutWarnings();
    assertFalse(compilation.generatedSourceFile("test.DistributedBase").isPresent());
    assertTrue(compilation.generatedSourceFile("test.DistributedImpl").isPresent());
  }

  @Test
  void generatedMethodsAvoidParameterNames() {
    JavaFileObject src = source("M",
        "public class M {",
        "  @Distributed Tensor w;",
        "  public Tensor forward(Tensor bmt$args, int a) { return bmt$args; }",
        "}");
    Compilation compilation = compile(src);
    assertThat(compilation).succeededWithoutWarnings();
    assertThat(compilation).generatedSourceFile("test.DistributedM")
        .contentsAsUtf8String().contains("bmt$args_ -> super.forward((Tensor) bmt$args_[0], (int) bmt$args_[1])");
  }

  @Test
  void everyBlockOptionOfTheAnnotationsReachesTheGeneratedCode() {
    JavaFileObject src = source("M",
        "public class M {",
        "  @Checkpoint(zeroLevel = 2, maxGatheredBlocks = 1, earlyStop = false) Blk head;",
        "  @BlockList(recompute = false, earlyStop = false) List<Blk> layers;",
        "  public Tensor forward(Tensor x) { return x; }",
        "}");
    Compilation compilation = compile(src, BLOCK);
    assertThat(compilation).succeededWithoutWarnings();
    assertThat(compilation).generatedSourceFile("test.DistributedM").contentsAsUtf8String()
        .contains("BlockOptions.builder().zeroLevel(2).recompute(true).maxGatheredBlocks(1)"
            + ".earlyStop(false).build()");
    assertThat(compilation).generatedSourceFile("test.DistributedM").contentsAsUtf8String()
        .contains("BlockOptions.builder().zeroLevel(3).recompute(false).maxGatheredBlocks(2)"
            + ".earlyStop(false).build()");
    assertThat(compilation).generatedSourceFile("test.DistributedM").contentsAsUtf8String()
        .contains("{@code head} ({@code @Checkpoint}): ZeRO-2 (kept gathered from forward to backward);\n"
            + " *       recomputed in backward, early stop off; maxGatheredBlocks 1 (prefetch off)");
  }

  @Test
  void supportsTheLatestSourceVersion() {
    assertEquals(SourceVersion.latestSupported(),
        new DistributedProcessor().getSupportedSourceVersion());
  }
}
