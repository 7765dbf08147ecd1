package io.bmtrain4j.processor;

import com.google.auto.service.AutoService;
import com.palantir.javapoet.JavaFile;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import javax.annotation.processing.AbstractProcessor;
import javax.annotation.processing.Messager;
import javax.annotation.processing.ProcessingEnvironment;
import javax.annotation.processing.Processor;
import javax.annotation.processing.RoundEnvironment;
import javax.lang.model.SourceVersion;
import javax.lang.model.element.AnnotationMirror;
import javax.lang.model.element.Element;
import javax.lang.model.element.ExecutableElement;
import javax.lang.model.element.TypeElement;
import javax.lang.model.element.VariableElement;
import javax.lang.model.type.ArrayType;
import javax.lang.model.type.DeclaredType;
import javax.lang.model.type.TypeKind;
import javax.lang.model.type.TypeMirror;
import javax.lang.model.util.ElementFilter;
import javax.tools.Diagnostic.Kind;

/**
 * Generates {@code Distributed<Name>} for every class that declares or inherits
 * {@code @Distributed}, {@code @Checkpoint}, {@code @BlockList} or {@code @EntryPoint}.
 *
 * <p>Three steps, as Google AutoFactory and Dagger take them: {@link ShardedClassValidator}
 * returns a {@link ValidationReport}; for a clean one, {@link DescriptorFactory} builds a
 * {@link ShardedClassDescriptor}; {@link DistributedWriter} writes it with JavaPoet.
 *
 * <p>It never claims annotations (returns false) and never lets an exception reach javac: a
 * failure on one class becomes an ERROR on that class, and the other classes are still processed.
 * It supports {@code "*"} because a subclass that only inherits the annotations (from a jar, say)
 * carries none of them itself.
 */
@AutoService(Processor.class)
public final class DistributedProcessor extends AbstractProcessor {
  /** Called before each class is processed; tests use it to simulate an internal failure. */
  interface ClassHook {
    void beforeClass(TypeElement type);
  }

  private final ClassHook hook;
  private TypeFacts facts;
  private ShardedClassValidator validator;
  private DescriptorFactory descriptors;
  private DistributedWriter writer;
  private Messager messager;
  /** Qualified names of the classes generated for, so a later round never writes them twice. */
  private final Set<String> done = new HashSet<>();
  /** Classes whose types did not resolve yet (another processor may generate them). */
  private final Set<String> deferred = new TreeSet<>();
  /** Diagnostics already printed, see {@link ValidationReport#printTo}. */
  private final Set<String> printed = new HashSet<>();

  public DistributedProcessor() {
    this(type -> {});
  }

  DistributedProcessor(ClassHook hook) {
    this.hook = hook;
  }

  @Override
  public synchronized void init(ProcessingEnvironment env) {
    super.init(env);
    facts = new TypeFacts(env.getElementUtils(), env.getTypeUtils());
    validator = new ShardedClassValidator(facts);
    descriptors = new DescriptorFactory(facts);
    writer = new DistributedWriter();
    messager = env.getMessager();
  }

  @Override
  public Set<String> getSupportedAnnotationTypes() {
    return Set.of("*");
  }

  @Override
  public SourceVersion getSupportedSourceVersion() {
    return SourceVersion.latestSupported();
  }

  @Override
  public boolean process(Set<? extends TypeElement> annotations, RoundEnvironment round) {
    try {
      // Sorted by qualified name: diagnostics and files come out in the same order every build.
      TreeMap<String, TypeElement> candidates = new TreeMap<>();
      for (String name : deferred) {
        TypeElement type = processingEnv.getElementUtils().getTypeElement(name);
        if (type != null) {
          candidates.put(name, type);
        }
      }
      deferred.clear();
      for (String annotation : List.of(TypeFacts.DISTRIBUTED, TypeFacts.CHECKPOINT,
          TypeFacts.BLOCK_LIST, TypeFacts.ENTRY_POINT)) {
        TypeElement annotationType = processingEnv.getElementUtils().getTypeElement(annotation);
        if (annotationType == null) {
          continue;
        }
        for (Element element : round.getElementsAnnotatedWith(annotationType)) {
          if (element.getEnclosingElement() instanceof TypeElement type) {
            candidates.put(type.getQualifiedName().toString(), type);
          }
        }
      }
      for (TypeElement type : typesIn(round.getRootElements())) {
        if (!TypeFacts.declaresAnnotations(type) && isInheritingCandidate(type)) {
          candidates.put(type.getQualifiedName().toString(), type);
        }
      }
      for (TypeElement type : candidates.values()) {
        process(type, round.processingOver());
      }
    } catch (Throwable e) {
      messager.printMessage(Kind.ERROR, Message.PROCESSOR_FAILED.format("this round", describe(e)));
    }
    return false;
  }

  private void process(TypeElement type, boolean lastRound) {
    String name = type.getQualifiedName().toString();
    try {
      hook.beforeClass(type);
      if (done.contains(name)) {
        return;
      }
      boolean unresolved = hasUnresolvedTypes(type);
      if (unresolved && !lastRound) {
        deferred.add(name);
        return;
      }
      ValidationReport report = validator.validate(type);
      if (TypeFacts.declaresAnnotations(type)) {
        report.printTo(messager, printed);
      } else if (!report.isClean()) {
        // Its superclass's own errors are reported on the superclass; here, only say why no class
        // is generated, without failing a build that may never use it.
        String cause = report.items().stream()
            .filter(i -> i.message().kind() == Kind.ERROR)
            .findFirst().orElseThrow().text();
        ValidationReport note = new ValidationReport();
        note.add(Message.NOT_GENERATED, type, name, TypeFacts.generatedSimpleName(type), cause);
        note.printTo(messager, printed);
      }
      // Unresolved types in the last round are javac's to report ("cannot find symbol").
      if (report.shouldGenerate() && !unresolved) {
        done.add(name);
        JavaFile file = writer.write(descriptors.create(type));
        file.writeTo(processingEnv.getFiler());
      }
    } catch (Throwable e) {
      done.add(name);
      messager.printMessage(Kind.ERROR, Message.PROCESSOR_FAILED.format(name, describe(e)), type);
    }
  }

  /** A class that declares no annotation but inherits some, and is not itself generated. */
  private boolean isInheritingCandidate(TypeElement type) {
    if (facts.isShardedModule(type) || isGeneratedByUs(type)) {
      return false;
    }
    return facts.inheritsAnnotations(type);
  }

  private static boolean isGeneratedByUs(TypeElement type) {
    for (AnnotationMirror mirror : type.getAnnotationMirrors()) {
      if (mirror.getAnnotationType().toString().equals("javax.annotation.processing.Generated")
          && mirror.getElementValues().values().stream()
              .anyMatch(v -> v.toString().contains(DistributedProcessor.class.getCanonicalName()))) {
        return true;
      }
    }
    return false;
  }

  /** Top-level and (recursively) member types among the root elements. */
  private static List<TypeElement> typesIn(Set<? extends Element> roots) {
    List<TypeElement> types = new ArrayList<>();
    List<TypeElement> pending = new ArrayList<>(ElementFilter.typesIn(roots));
    while (!pending.isEmpty()) {
      TypeElement type = pending.remove(pending.size() - 1);
      types.add(type);
      pending.addAll(ElementFilter.typesIn(type.getEnclosedElements()));
    }
    return types;
  }

  /**
   * Whether a type the generated code mentions has not resolved yet (an ERROR type): a superclass,
   * an annotated field, or a constructor's or method's signature.
   */
  private boolean hasUnresolvedTypes(TypeElement type) {
    for (TypeElement t : facts.chain(type)) {
      if (t.getSuperclass().getKind() == TypeKind.ERROR) {
        return true;
      }
      for (VariableElement field : ElementFilter.fieldsIn(t.getEnclosedElements())) {
        if (!TypeFacts.fieldAnnotations(field).isEmpty() && isUnresolved(field.asType())) {
          return true;
        }
      }
      for (ExecutableElement e : ElementFilter.constructorsIn(t.getEnclosedElements())) {
        if (isUnresolved(e)) {
          return true;
        }
      }
      for (ExecutableElement e : ElementFilter.methodsIn(t.getEnclosedElements())) {
        if (isUnresolved(e)) {
          return true;
        }
      }
    }
    return false;
  }

  private static boolean isUnresolved(ExecutableElement e) {
    if (isUnresolved(e.getReturnType())) {
      return true;
    }
    for (VariableElement p : e.getParameters()) {
      if (isUnresolved(p.asType())) {
        return true;
      }
    }
    return e.getThrownTypes().stream().anyMatch(DistributedProcessor::isUnresolved);
  }

  private static boolean isUnresolved(TypeMirror type) {
    switch (type.getKind()) {
      case ERROR:
        return true;
      case ARRAY:
        return isUnresolved(((ArrayType) type).getComponentType());
      case DECLARED:
        return ((DeclaredType) type).getTypeArguments().stream()
            .anyMatch(DistributedProcessor::isUnresolved);
      default:
        return false;
    }
  }

  private static String describe(Throwable e) {
    StackTraceElement[] trace = e.getStackTrace();
    return e + (trace.length > 0 ? " at " + trace[0] : "");
  }
}
