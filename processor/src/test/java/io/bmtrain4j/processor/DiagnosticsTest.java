package io.bmtrain4j.processor;

import static com.google.testing.compile.CompilationSubject.assertThat;
import static io.bmtrain4j.processor.Sources.compile;
import static io.bmtrain4j.processor.Sources.source;
import static io.bmtrain4j.processor.Sources.sourceIn;

import com.google.testing.compile.Compilation;
import javax.tools.JavaFileObject;
import org.junit.jupiter.api.Test;

/** One test per diagnostic: the message (with its fix) on the narrowest element's line. */
class DiagnosticsTest {
  /** A valid block, for the fields that hold blocks. */
  private static final JavaFileObject SHARDED_BLOCK = source("Blk",
      "public class Blk {",
      "  @Distributed Tensor w;",
      "  public Tensor forward(Tensor x) { return x; }",
      "}");

  /** A class with nothing to shard. */
  private static final JavaFileObject PLAIN = source("Plain",
      "public class Plain {",
      "  Tensor w;",
      "  public Tensor forward(Tensor x) { return x; }",
      "}");

  /** A model class with the given member lines and a valid forward. */
  private static JavaFileObject model(String... members) {
    String[] lines = new String[members.length + 3];
    lines[0] = "public class M {";
    System.arraycopy(members, 0, lines, 1, members.length);
    lines[members.length + 1] = "  public Tensor forward(Tensor x) { return x; }";
    lines[members.length + 2] = "}";
    return source("M", lines);
  }

  private static void assertError(JavaFileObject src, String message, String line,
      JavaFileObject... others) {
    JavaFileObject[] all = new JavaFileObject[others.length + 1];
    all[0] = src;
    System.arraycopy(others, 0, all, 1, others.length);
    Compilation compilation = compile(all);
    assertThat(compilation).failed();
    assertThat(compilation).hadErrorContaining(message).inFile(src).onLineContaining(line);
  }

  @Test
  void aLibtorchModuleLeftUnshardedIsAWarningUnlessSuppressed() {
    JavaFileObject src = model("  @Distributed Tensor w;", "  org.bytedeco.pytorch.LinearImpl proj;",
        "  @SuppressWarnings(\"bmtrain4j-unsharded\") org.bytedeco.pytorch.LinearImpl frozen;");
    // A warning, so without -Werror the class compiles and its sharded subclass is generated.
    Compilation compilation = com.google.testing.compile.Compiler.javac().withProcessors(new DistributedProcessor())
        .withOptions("-Xlint:all,-processing").compile(src);
    assertThat(compilation).succeeded();
    assertThat(compilation).generatedSourceFile("test.DistributedM");
    assertThat(compilation).hadWarningContaining("[bmtrain4j:unsharded-module] field proj is a libtorch module"
        + " (org.bytedeco.pytorch.LinearImpl) without @Distributed").inFile(src).onLineContaining("LinearImpl proj");
    assertThat(compilation).hadWarningCount(1);
  }

  @Test
  void privateField() {
    assertError(model("  @Distributed private Tensor w;"),
        "@Distributed field w is private. Fix: make it package-private or protected",
        "private Tensor w");
  }

  @Test
  void finalField() {
    assertError(model("  @Checkpoint final Blk head = null;"),
        "[bmtrain4j:field-final] @Checkpoint field head is final", "final Blk head", SHARDED_BLOCK);
  }

  @Test
  void staticField() {
    assertError(model("  @Distributed static Tensor w;"),
        "@Distributed field w is static. Fix: make it an instance field", "static Tensor w");
  }

  @Test
  void distributedOnWrongType() {
    assertError(model("  @Distributed String name;"),
        "@Distributed field name has type java.lang.String, which is neither"
            + " org.bytedeco.pytorch.Tensor nor a subtype of org.bytedeco.pytorch.Module",
        "String name");
  }

  @Test
  void checkpointWithNothingToShard() {
    assertError(model("  @Checkpoint Plain head;"),
        "@Checkpoint field head has type test.Plain, which has nothing to shard", "Plain head",
        PLAIN);
  }

  @Test
  void checkpointOnPrimitiveOrInterface() {
    JavaFileObject src = model("  @Checkpoint int n;", "  @Checkpoint Runnable r;");
    Compilation compilation = compile(src);
    assertThat(compilation).hadErrorContaining("[bmtrain4j:checkpoint-nothing-to-shard] @Checkpoint field n")
        .inFile(src).onLineContaining("int n");
    assertThat(compilation).hadErrorContaining("@Checkpoint field r has type java.lang.Runnable")
        .inFile(src).onLineContaining("Runnable r");
  }

  @Test
  void blockListOnNonList() {
    assertError(model("  @BlockList Set<Blk> layers;"),
        "@BlockList field layers has type java.util.Set<test.Blk>, which is not a List<B>",
        "Set<Blk> layers", SHARDED_BLOCK);
  }

  @Test
  void blockListOnRawList() {
    assertError(model("  @SuppressWarnings(\"rawtypes\") @BlockList List layers;"),
        "[bmtrain4j:block-list-type]", "List layers");
  }

  @Test
  void blockListWithNothingToShard() {
    JavaFileObject src = model("  @BlockList List<Plain> layers;", "  @BlockList Plain[] more;");
    Compilation compilation = compile(src, PLAIN);
    assertThat(compilation)
        .hadErrorContaining("@BlockList field layers holds elements of type test.Plain, which has"
            + " nothing to shard")
        .inFile(src).onLineContaining("List<Plain> layers");
    assertThat(compilation).hadErrorContaining("@BlockList field more holds elements")
        .inFile(src).onLineContaining("Plain[] more");
  }

  @Test
  void conflictingAnnotations() {
    assertError(model("  @Distributed @Checkpoint Blk head;"),
        "field head carries both @Distributed and @Checkpoint", "Blk head", SHARDED_BLOCK);
  }

  @Test
  void unsupportedZeroLevel() {
    assertError(model("  @Checkpoint(zeroLevel = 1) Blk head;"),
        "@Checkpoint(zeroLevel = 1) on field head is not a supported ZeRO level. Fix: use"
            + " zeroLevel = 3",
        "zeroLevel = 1", SHARDED_BLOCK);
  }

  @Test
  void maxGatheredBlocksBelowOne() {
    assertError(model("  @BlockList(maxGatheredBlocks = 0) List<Blk> layers;"),
        "@BlockList(maxGatheredBlocks = 0) on field layers is less than 1", "maxGatheredBlocks = 0",
        SHARDED_BLOCK);
  }

  @Test
  void checkpointMaxGatheredBlocksBelowOne() {
    assertError(model("  @Checkpoint(maxGatheredBlocks = 0) Blk head;"),
        "[bmtrain4j:max-gathered-blocks] @Checkpoint(maxGatheredBlocks = 0) on field head is less"
            + " than 1. Fix: use 2",
        "maxGatheredBlocks = 0", SHARDED_BLOCK);
  }

  @Test
  void finalClass() {
    JavaFileObject src = source("M",
        "public final class M {",
        "  @Distributed Tensor w;",
        "  public Tensor forward(Tensor x) { return x; }",
        "}");
    assertError(src, "class test.M is final, so bmtrain4j cannot generate its sharded subclass"
        + " DistributedM. Fix: remove 'final'", "final class M");
  }

  @Test
  void privateNestedClass() {
    JavaFileObject src = source("M",
        "public class M {",
        "  private static class Hidden {",
        "    @Distributed Tensor w;",
        "    public Tensor forward(Tensor x) { return x; }",
        "  }",
        "}");
    assertError(src, "[bmtrain4j:class-private] class test.M.Hidden is private",
        "private static class Hidden");
  }

  @Test
  void onlyPrivateConstructors() {
    assertError(model("  @Distributed Tensor w;", "  private M() {}"),
        "class test.M has only private constructors", "public class M");
  }

  @Test
  void nonStaticInnerClass() {
    JavaFileObject src = source("M",
        "public class M {",
        "  public class Inner {",
        "    @Distributed Tensor w;",
        "    public Tensor forward(Tensor x) { return x; }",
        "  }",
        "}");
    assertError(src, "class test.M.Inner is an inner (non-static) class. Fix: declare it 'static'",
        "public class Inner");
  }

  @Test
  void enumIsNotAClass() {
    JavaFileObject src = source("E",
        "public enum E {",
        "  A;",
        "  @Distributed Tensor w;",
        "  public Tensor forward(Tensor x) { return x; }",
        "}");
    assertError(src, "[bmtrain4j:class-kind] test.E is an enum", "public enum E");
  }

  @Test
  void noForward() {
    JavaFileObject src = source("M",
        "public class M {",
        "  @Distributed Tensor w;",
        "  private Tensor forward(Tensor x) { return x; }",
        "}");
    assertError(src, "class test.M has no non-private forward method, declared or inherited",
        "public class M");
  }

  @Test
  void finalForward() {
    JavaFileObject src = source("M",
        "public class M {",
        "  @Distributed Tensor w;",
        "  public final Tensor forward(Tensor x) { return x; }",
        "}");
    assertError(src, "forward method M.forward(org.bytedeco.pytorch.Tensor) is final",
        "final Tensor forward");
  }

  @Test
  void finalForwardInherited() {
    JavaFileObject base = source("Base",
        "public class Base {",
        "  public final Tensor forward(Tensor x) { return x; }",
        "}");
    JavaFileObject sub = source("M",
        "public class M extends Base {",
        "  @Distributed Tensor w;",
        "}");
    Compilation compilation = compile(sub, base);
    assertThat(compilation).hadErrorContaining("[bmtrain4j:forward-final]")
        .inFile(base).onLineContaining("final Tensor forward");
  }

  @Test
  void staticForward() {
    JavaFileObject src = source("M",
        "public class M {",
        "  @Distributed Tensor w;",
        "  public static Tensor forward(Tensor x) { return x; }",
        "}");
    assertError(src, "forward method M.forward(org.bytedeco.pytorch.Tensor) is static",
        "static Tensor forward");
  }

  @Test
  void entryPointPrivateStaticFinal() {
    JavaFileObject src = model(
        "  @Distributed Tensor w;",
        "  @EntryPoint private Tensor a(Tensor x) { return x; }",
        "  @EntryPoint static Tensor b(Tensor x) { return x; }",
        "  @EntryPoint public final Tensor c(Tensor x) { return x; }");
    Compilation compilation = compile(src);
    assertThat(compilation).hadErrorContaining("@EntryPoint method M.a(org.bytedeco.pytorch.Tensor)"
        + " is private").inFile(src).onLineContaining("private Tensor a");
    assertThat(compilation).hadErrorContaining("@EntryPoint method M.b(org.bytedeco.pytorch.Tensor)"
        + " is static").inFile(src).onLineContaining("static Tensor b");
    assertThat(compilation).hadErrorContaining("@EntryPoint method M.c(org.bytedeco.pytorch.Tensor)"
        + " is final").inFile(src).onLineContaining("final Tensor c");
  }

  @Test
  void entryPointWithNothingToShard() {
    assertError(model("  @EntryPoint public Tensor head(Tensor x) { return x; }"),
        "[bmtrain4j:entry-point-nothing-to-shard]", "Tensor head");
  }

  @Test
  void packagePrivateFieldOfSuperclassInAnotherPackage() {
    JavaFileObject base = sourceIn("test.base", "Base",
        "public class Base {",
        "  @Distributed Tensor w;",
        "  public Tensor forward(Tensor x) { return x; }",
        "}");
    JavaFileObject sub = source("M",
        "public class M extends test.base.Base {",
        "  @Distributed protected Tensor v;",
        "}");
    Compilation compilation = compile(sub, base);
    assertThat(compilation)
        .hadErrorContaining("@Distributed field w of test.base.Base is package-private, so the"
            + " generated DistributedM in another package cannot read it. Fix: make w protected")
        .inFile(sub).onLineContaining("public class M");
  }

  @Test
  void everyErrorIsReportedOnce() {
    JavaFileObject src = model("  @Distributed private static final Tensor w = null;");
    Compilation compilation = compile(src);
    assertThat(compilation).hadErrorCount(3);
    assertThat(compilation).hadErrorContaining("[bmtrain4j:field-private]");
    assertThat(compilation).hadErrorContaining("[bmtrain4j:field-static]");
    assertThat(compilation).hadErrorContaining("[bmtrain4j:field-final]");
  }
}
