package io.bmtrain4j.processor;

import java.util.List;
import javax.lang.model.element.Element;
import javax.lang.model.element.Modifier;
import javax.lang.model.element.TypeElement;
import javax.lang.model.type.TypeMirror;
import javax.lang.model.type.TypeVariable;

/**
 * Step two of three: what the generated class must contain, resolved from a validated class (types
 * seen as members of it, so a {@code forward(T)} inherited from {@code Block<Tensor>} reads
 * {@code forward(Tensor)}). The writer turns it into source without consulting the compiler again,
 * except to name types.
 *
 * @param type the annotated (or inheriting) class
 * @param packageName its package, where the generated class goes
 * @param generatedSimpleName {@code DistributedBlock}, {@code DistributedOuter_Inner}
 * @param runtimeName the name the runtime reports: {@code Block}, {@code Outer.Inner}
 * @param isPublic whether the generated class is public (the class and its enclosing ones are)
 * @param deprecated whether the class is deprecated (so the generated one is, to stay warning-free)
 * @param originatingElements the class and its superclasses: what the output depends on
 * @param fields the annotated fields, superclasses' first, then declaration order
 * @param constructors the non-private constructors, in declaration order
 * @param methods the wrapped forward and entry-point methods, most derived class first
 */
record ShardedClassDescriptor(
    TypeElement type,
    String packageName,
    String generatedSimpleName,
    String runtimeName,
    boolean isPublic,
    boolean deprecated,
    List<Element> originatingElements,
    List<FieldDescriptor> fields,
    List<ExecutableDescriptor> constructors,
    List<ExecutableDescriptor> methods) {

  /** How a field is registered with the runtime: the builder method it calls. */
  enum FieldKind {
    TENSOR("tensor", "Distributed"),
    MODULE("module", "Distributed"),
    CHECKPOINT("checkpoint", "Checkpoint"),
    BLOCK_LIST("blockList", "BlockList");

    final String builderMethod;
    /** The simple name of the field's annotation, for the generated Javadoc. */
    final String annotation;

    FieldKind(String builderMethod, String annotation) {
      this.builderMethod = builderMethod;
      this.annotation = annotation;
    }

    boolean isBlock() {
      return this == CHECKPOINT || this == BLOCK_LIST;
    }
  }

  /**
   * One annotated field.
   *
   * @param blockOptions for blocks, the options their annotation sets (defaults filled in); null
   *     otherwise
   * @param blockClassName for blocks, the generated class of the declared block type (the element
   *     type of a list or array), qualified; null otherwise
   */
  record FieldDescriptor(
      String name,
      FieldKind kind,
      BlockOptionsDescriptor blockOptions,
      String blockClassName) {}

  /** What the generated code passes to the runtime's {@code BlockOptions} builder, by name. */
  record BlockOptionsDescriptor(
      int zeroLevel,
      boolean recompute,
      int maxGatheredBlocks,
      boolean earlyStop) {}

  record ParameterDescriptor(String name, TypeMirror type) {}

  /**
   * A constructor to mirror or a method to override.
   *
   * @param name the method's name; {@code <init>} for a constructor
   * @param access {@code PUBLIC}, {@code PROTECTED}, or none (package-private)
   * @param suppressedWarnings the lint categories the generated member must suppress, sorted:
   *     {@code rawtypes} where the signature has raw types, {@code unchecked} where arguments are
   *     cast to non-reifiable types or a varargs parameter is generic
   * @param throwsChecked whether the method declares checked exceptions, which the runtime's
   *     {@code ForwardBody} cannot declare: the body is then rethrown unchanged (see the writer)
   */
  record ExecutableDescriptor(
      String name,
      List<Modifier> access,
      List<TypeVariable> typeVariables,
      List<ParameterDescriptor> parameters,
      boolean varargs,
      TypeMirror returnType,
      List<TypeMirror> thrownTypes,
      boolean deprecated,
      List<String> suppressedWarnings,
      boolean throwsChecked) {}
}
