package io.bmtrain4j.processor;

import io.bmtrain4j.annotations.BlockList;
import io.bmtrain4j.annotations.Checkpoint;
import io.bmtrain4j.annotations.Distributed;
import io.bmtrain4j.annotations.EntryPoint;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import javax.lang.model.element.AnnotationMirror;
import javax.lang.model.element.AnnotationValue;
import javax.lang.model.element.Element;
import javax.lang.model.element.ElementKind;
import javax.lang.model.element.ExecutableElement;
import javax.lang.model.element.Modifier;
import javax.lang.model.element.NestingKind;
import javax.lang.model.element.TypeElement;
import javax.lang.model.element.VariableElement;
import javax.lang.model.type.ArrayType;
import javax.lang.model.type.DeclaredType;
import javax.lang.model.type.TypeKind;
import javax.lang.model.type.TypeMirror;
import javax.lang.model.type.WildcardType;
import javax.lang.model.util.ElementFilter;
import javax.lang.model.util.Elements;
import javax.lang.model.util.Types;

/**
 * Facts about user types shared by the validator and the descriptor factory: the annotations, the
 * superclass chain, the libtorch types (by name only: the processor does not depend on them), the
 * element type of a block list, and the generated class's name.
 */
final class TypeFacts {
  static final String TENSOR = "org.bytedeco.pytorch.Tensor";
  static final String MODULE = "org.bytedeco.pytorch.Module";
  static final String SHARDED_MODULE = "io.bmtrain4j.zero.ShardedModule";

  static final String DISTRIBUTED = Distributed.class.getCanonicalName();
  static final String CHECKPOINT = Checkpoint.class.getCanonicalName();
  static final String BLOCK_LIST = BlockList.class.getCanonicalName();
  static final String ENTRY_POINT = EntryPoint.class.getCanonicalName();
  /** The field annotations, in the order conflicts are reported. */
  static final List<String> FIELD_ANNOTATIONS = List.of(DISTRIBUTED, CHECKPOINT, BLOCK_LIST);

  final Elements elements;
  final Types types;

  TypeFacts(Elements elements, Types types) {
    this.elements = elements;
    this.types = types;
  }

  // ---- annotations ----

  static Optional<AnnotationMirror> annotation(Element element, String qualifiedName) {
    for (AnnotationMirror mirror : element.getAnnotationMirrors()) {
      TypeElement type = (TypeElement) mirror.getAnnotationType().asElement();
      if (type.getQualifiedName().contentEquals(qualifiedName)) {
        return Optional.of(mirror);
      }
    }
    return Optional.empty();
  }

  static String simpleName(String annotation) {
    return annotation.substring(annotation.lastIndexOf('.') + 1);
  }

  /** The field annotations present on {@code field}, in {@link #FIELD_ANNOTATIONS} order. */
  static List<String> fieldAnnotations(Element field) {
    List<String> present = new ArrayList<>();
    for (String name : FIELD_ANNOTATIONS) {
      if (annotation(field, name).isPresent()) {
        present.add(name);
      }
    }
    return present;
  }

  /** The explicit or default value of {@code attribute}. */
  AnnotationValue value(AnnotationMirror mirror, String attribute) {
    for (Map.Entry<? extends ExecutableElement, ? extends AnnotationValue> e :
        elements.getElementValuesWithDefaults(mirror).entrySet()) {
      if (e.getKey().getSimpleName().contentEquals(attribute)) {
        return e.getValue();
      }
    }
    throw new IllegalArgumentException("no attribute " + attribute + " in " + mirror);
  }

  /** The value written in source, or null where the default applies (for diagnostics' position). */
  static AnnotationValue explicitValue(AnnotationMirror mirror, String attribute) {
    for (Map.Entry<? extends ExecutableElement, ? extends AnnotationValue> e :
        mirror.getElementValues().entrySet()) {
      if (e.getKey().getSimpleName().contentEquals(attribute)) {
        return e.getValue();
      }
    }
    return null;
  }

  // ---- hierarchy ----

  /** {@code type} and its superclasses, most derived first, without {@code java.lang.Object}. */
  List<TypeElement> chain(TypeElement type) {
    List<TypeElement> chain = new ArrayList<>();
    TypeElement current = type;
    while (current != null && !current.getQualifiedName().contentEquals("java.lang.Object")) {
      chain.add(current);
      TypeMirror superclass = current.getSuperclass();
      current = superclass.getKind() == TypeKind.DECLARED
          ? (TypeElement) ((DeclaredType) superclass).asElement()
          : null;
    }
    return chain;
  }

  /** The fields carrying a field annotation, superclasses' first, then declaration order. */
  List<VariableElement> annotatedFields(TypeElement type) {
    List<TypeElement> rootFirst = new ArrayList<>(chain(type));
    Collections.reverse(rootFirst);
    List<VariableElement> fields = new ArrayList<>();
    for (TypeElement t : rootFirst) {
      for (VariableElement field : ElementFilter.fieldsIn(t.getEnclosedElements())) {
        if (!fieldAnnotations(field).isEmpty()) {
          fields.add(field);
        }
      }
    }
    return fields;
  }

  /** Whether {@code type} itself declares a bmtrain4j annotation on a field or method. */
  static boolean declaresAnnotations(TypeElement type) {
    for (Element member : type.getEnclosedElements()) {
      if (member.getKind() == ElementKind.FIELD && !fieldAnnotations(member).isEmpty()) {
        return true;
      }
      if (member.getKind() == ElementKind.METHOD && annotation(member, ENTRY_POINT).isPresent()) {
        return true;
      }
    }
    return false;
  }

  boolean inheritsAnnotations(TypeElement type) {
    return chain(type).stream().anyMatch(TypeFacts::declaresAnnotations);
  }

  /** Whether {@code type} is a class that declares or inherits a {@code @Distributed} field. */
  boolean hasDistributedFields(TypeMirror type) {
    if (type.getKind() != TypeKind.DECLARED) {
      return false;
    }
    TypeElement element = (TypeElement) ((DeclaredType) type).asElement();
    if (element.getKind() != ElementKind.CLASS) {
      return false;
    }
    for (TypeElement t : chain(element)) {
      for (VariableElement field : ElementFilter.fieldsIn(t.getEnclosedElements())) {
        if (annotation(field, DISTRIBUTED).isPresent()) {
          return true;
        }
      }
    }
    return false;
  }

  // ---- libtorch types, by name ----

  boolean isTensor(TypeMirror type) {
    TypeElement tensor = elements.getTypeElement(TENSOR);
    return tensor != null && type.getKind() == TypeKind.DECLARED
        && types.isSameType(types.erasure(type), types.erasure(tensor.asType()));
  }

  boolean isModule(TypeMirror type) {
    TypeElement module = elements.getTypeElement(MODULE);
    return module != null && type.getKind() == TypeKind.DECLARED
        && types.isSubtype(types.erasure(type), types.erasure(module.asType()));
  }

  boolean isShardedModule(TypeElement type) {
    TypeElement sharded = elements.getTypeElement(SHARDED_MODULE);
    return sharded != null && types.isSubtype(types.erasure(type.asType()), types.erasure(sharded.asType()));
  }

  // ---- block lists ----

  /**
   * The element type {@code B} of a {@code List<B>} (or subtype of List) or {@code B[]} field type;
   * empty for anything else, a raw List or {@code List<?>} included.
   */
  Optional<TypeMirror> blockListElement(TypeMirror fieldType) {
    if (fieldType.getKind() == TypeKind.ARRAY) {
      return Optional.of(((ArrayType) fieldType).getComponentType());
    }
    if (fieldType.getKind() != TypeKind.DECLARED) {
      return Optional.empty();
    }
    TypeElement list = elements.getTypeElement("java.util.List");
    DeclaredType asList = findSupertype((DeclaredType) fieldType, types.erasure(list.asType()));
    if (asList == null || asList.getTypeArguments().size() != 1) {
      return Optional.empty();
    }
    TypeMirror argument = asList.getTypeArguments().get(0);
    if (argument.getKind() == TypeKind.WILDCARD) {
      argument = ((WildcardType) argument).getExtendsBound();
    }
    return Optional.ofNullable(argument);
  }

  private DeclaredType findSupertype(DeclaredType type, TypeMirror erasedTarget) {
    if (types.isSameType(types.erasure(type), erasedTarget)) {
      return type;
    }
    for (TypeMirror supertype : types.directSupertypes(type)) {
      if (supertype.getKind() == TypeKind.DECLARED) {
        DeclaredType found = findSupertype((DeclaredType) supertype, erasedTarget);
        if (found != null) {
          return found;
        }
      }
    }
    return null;
  }

  // ---- names ----

  /** {@code Distributed<Name>}; nested {@code Outer.Inner} gives {@code DistributedOuter_Inner}. */
  static String generatedSimpleName(TypeElement type) {
    return "Distributed" + nestedName(type).replace('.', '_');
  }

  /** The generated class's qualified name for {@code type}, as a string for the runtime. */
  String generatedQualifiedName(TypeElement type) {
    String pkg = elements.getPackageOf(type).getQualifiedName().toString();
    return pkg.isEmpty() ? generatedSimpleName(type) : pkg + "." + generatedSimpleName(type);
  }

  /** The name relative to the package: {@code Outer.Inner}. */
  static String nestedName(TypeElement type) {
    StringBuilder name = new StringBuilder(type.getSimpleName());
    Element enclosing = type.getEnclosingElement();
    while (enclosing instanceof TypeElement outer) {
      name.insert(0, outer.getSimpleName() + ".");
      enclosing = outer.getEnclosingElement();
    }
    return name.toString();
  }

  static boolean isNested(TypeElement type) {
    return type.getNestingKind() == NestingKind.MEMBER;
  }

  static boolean isPrivateOrInPrivate(TypeElement type) {
    Element e = type;
    while (e instanceof TypeElement t) {
      if (t.getModifiers().contains(Modifier.PRIVATE)) {
        return true;
      }
      e = t.getEnclosingElement();
    }
    return false;
  }

  // ---- methods ----

  /** A method the class exposes: declared or inherited, not overridden by a more derived one. */
  record EffectiveMethod(ExecutableElement method, boolean entryPoint) {
    boolean isForward() {
      return method.getSimpleName().contentEquals("forward");
    }
  }

  /**
   * The methods of {@code type} and its superclasses that no more derived method overrides, most
   * derived class first, then declaration order. A method is an entry point if it, or a method it
   * overrides, carries {@code @EntryPoint}.
   */
  List<EffectiveMethod> effectiveMethods(TypeElement type) {
    List<ExecutableElement> effective = new ArrayList<>();
    List<Boolean> entryPoints = new ArrayList<>();
    for (TypeElement t : chain(type)) {
      for (ExecutableElement method : ElementFilter.methodsIn(t.getEnclosedElements())) {
        boolean entryPoint = annotation(method, ENTRY_POINT).isPresent();
        int overrider = -1;
        for (int i = 0; i < effective.size() && overrider < 0; i++) {
          if (elements.overrides(effective.get(i), method, type)) {
            overrider = i;
          }
        }
        if (overrider >= 0) {
          entryPoints.set(overrider, entryPoints.get(overrider) || entryPoint);
        } else {
          effective.add(method);
          entryPoints.add(entryPoint);
        }
      }
    }
    List<EffectiveMethod> result = new ArrayList<>();
    for (int i = 0; i < effective.size(); i++) {
      result.add(new EffectiveMethod(effective.get(i), entryPoints.get(i)));
    }
    return result;
  }

  /**
   * Whether the generated subclass of {@code type} (same package) can override {@code method}: not
   * private, static, final or abstract, and package-private only within the package.
   */
  boolean isWrappable(TypeElement type, ExecutableElement method) {
    var modifiers = method.getModifiers();
    if (modifiers.contains(Modifier.PRIVATE) || modifiers.contains(Modifier.STATIC)
        || modifiers.contains(Modifier.FINAL) || modifiers.contains(Modifier.ABSTRACT)) {
      return false;
    }
    return isVisibleFromPackageOf(type, method);
  }

  /** Whether a non-private member is accessible from a subclass in {@code type}'s package. */
  boolean isVisibleFromPackageOf(TypeElement type, Element member) {
    var modifiers = member.getModifiers();
    if (modifiers.contains(Modifier.PUBLIC) || modifiers.contains(Modifier.PROTECTED)) {
      return true;
    }
    return !modifiers.contains(Modifier.PRIVATE)
        && elements.getPackageOf(member).equals(elements.getPackageOf(type));
  }
}
