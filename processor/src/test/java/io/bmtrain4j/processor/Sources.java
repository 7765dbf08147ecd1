package io.bmtrain4j.processor;

import static com.google.testing.compile.Compiler.javac;

import com.google.testing.compile.Compilation;
import com.google.testing.compile.JavaFileObjects;
import java.util.ArrayList;
import java.util.List;
import javax.tools.JavaFileObject;

/** Test sources and the compiler setup shared by the processor tests. */
final class Sources {
  /** Every lint category but "processing" (unclaimed annotations), warnings as errors. */
  static final String[] STRICT = {"-Xlint:all,-processing", "-Werror"};

  private static final List<String> IMPORTS = List.of(
      "import io.bmtrain4j.annotations.*;",
      "import java.util.*;",
      "import org.bytedeco.pytorch.*;");

  private Sources() {}

  /** A source in package {@code test}, with the annotations, java.util and libtorch imported. */
  static JavaFileObject source(String simpleName, String... body) {
    return sourceIn("test", simpleName, body);
  }

  static JavaFileObject sourceIn(String pkg, String simpleName, String... body) {
    List<String> lines = new ArrayList<>();
    lines.add("package " + pkg + ";");
    lines.addAll(IMPORTS);
    lines.addAll(List.of(body));
    return JavaFileObjects.forSourceLines(pkg + "." + simpleName, lines);
  }

  static Compilation compile(JavaFileObject... sources) {
    return javac().withProcessors(new DistributedProcessor()).withOptions((Object[]) STRICT).compile(sources);
  }

  static Compilation compile(DistributedProcessor processor, JavaFileObject... sources) {
    return javac().withProcessors(processor).withOptions((Object[]) STRICT).compile(sources);
  }
}
