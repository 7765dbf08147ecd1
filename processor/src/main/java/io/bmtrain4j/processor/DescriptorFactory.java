package io.bmtrain4j.processor;

import io.bmtrain4j.processor.ShardedClassDescriptor.BlockOptionsDescriptor;
import io.bmtrain4j.processor.ShardedClassDescriptor.ExecutableDescriptor;
import io.bmtrain4j.processor.ShardedClassDescriptor.FieldDescriptor;
import io.bmtrain4j.processor.ShardedClassDescriptor.FieldKind;
import io.bmtrain4j.processor.ShardedClassDescriptor.ParameterDescriptor;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import javax.lang.model.element.AnnotationMirror;
import javax.lang.model.element.Element;
import javax.lang.model.element.ExecutableElement;
import javax.lang.model.element.Modifier;
import javax.lang.model.element.TypeElement;
import javax.lang.model.element.VariableElement;
import javax.lang.model.type.ArrayType;
import javax.lang.model.type.DeclaredType;
import javax.lang.model.type.ExecutableType;
import javax.lang.model.type.TypeKind;
import javax.lang.model.type.TypeMirror;
import javax.lang.model.type.TypeVariable;
import javax.lang.model.type.WildcardType;
import javax.lang.model.util.ElementFilter;

/** Builds the {@link ShardedClassDescriptor} of a class the validator passed. */
final class DescriptorFactory {
  private final TypeFacts facts;

  DescriptorFactory(TypeFacts facts) {
    this.facts = facts;
  }

  ShardedClassDescriptor create(TypeElement type) {
    DeclaredType declared = (DeclaredType) type.asType();
    List<FieldDescriptor> fields = new ArrayList<>();
    for (VariableElement field : facts.annotatedFields(type)) {
      fields.add(field(field));
    }
    List<ExecutableDescriptor> constructors = new ArrayList<>();
    for (ExecutableElement constructor : ElementFilter.constructorsIn(type.getEnclosedElements())) {
      if (!constructor.getModifiers().contains(Modifier.PRIVATE)) {
        constructors.add(executable(declared, constructor, false));
      }
    }
    List<ExecutableDescriptor> methods = new ArrayList<>();
    for (TypeFacts.EffectiveMethod effective : facts.effectiveMethods(type)) {
      if ((effective.isForward() || effective.entryPoint())
          && facts.isWrappable(type, effective.method())) {
        methods.add(executable(declared, effective.method(), true));
      }
    }
    boolean isPublic = true;
    for (Element e = type; e instanceof TypeElement t; e = t.getEnclosingElement()) {
      isPublic &= t.getModifiers().contains(Modifier.PUBLIC);
    }
    return new ShardedClassDescriptor(
        type,
        facts.elements.getPackageOf(type).getQualifiedName().toString(),
        TypeFacts.generatedSimpleName(type),
        TypeFacts.nestedName(type),
        isPublic,
        facts.elements.isDeprecated(type),
        List.copyOf(facts.chain(type)),
        fields,
        constructors,
        methods);
  }

  private FieldDescriptor field(VariableElement field) {
    String name = field.getSimpleName().toString();
    String annotation = TypeFacts.fieldAnnotations(field).get(0);
    if (annotation.equals(TypeFacts.DISTRIBUTED)) {
      FieldKind kind = facts.isTensor(field.asType()) ? FieldKind.TENSOR : FieldKind.MODULE;
      return new FieldDescriptor(name, kind, null, null);
    }
    // @Checkpoint and @BlockList have the same attributes, with defaults the same as the runtime's.
    AnnotationMirror mirror = TypeFacts.annotation(field, annotation).orElseThrow();
    BlockOptionsDescriptor options = new BlockOptionsDescriptor(
        (Integer) facts.value(mirror, "zeroLevel").getValue(),
        (Boolean) facts.value(mirror, "recompute").getValue(),
        (Integer) facts.value(mirror, "maxGatheredBlocks").getValue(),
        (Boolean) facts.value(mirror, "earlyStop").getValue());
    TypeMirror blockType;
    FieldKind kind;
    if (annotation.equals(TypeFacts.CHECKPOINT)) {
      kind = FieldKind.CHECKPOINT;
      blockType = field.asType();
    } else {
      kind = FieldKind.BLOCK_LIST;
      blockType = facts.blockListElement(field.asType()).orElseThrow();
    }
    TypeElement block = (TypeElement) ((DeclaredType) blockType).asElement();
    return new FieldDescriptor(name, kind, options, facts.generatedQualifiedName(block));
  }

  private ExecutableDescriptor executable(
      DeclaredType owner, ExecutableElement element, boolean isMethod) {
    ExecutableType resolved = (ExecutableType) facts.types.asMemberOf(owner, element);
    List<Modifier> access = new ArrayList<>();
    for (Modifier m : List.of(Modifier.PUBLIC, Modifier.PROTECTED)) {
      if (element.getModifiers().contains(m)) {
        access.add(m);
      }
    }
    List<ParameterDescriptor> parameters = new ArrayList<>();
    TreeSet<String> suppressed = new TreeSet<>();
    for (int i = 0; i < element.getParameters().size(); i++) {
      TypeMirror type = resolved.getParameterTypes().get(i);
      parameters.add(new ParameterDescriptor(element.getParameters().get(i).getSimpleName().toString(), type));
      if (containsRawType(type)) {
        suppressed.add("rawtypes");
      }
      // The method casts each argument back from Object[]: unchecked unless reifiable.
      if (isMethod && !isReifiable(type)) {
        suppressed.add("unchecked");
      }
    }
    if (element.isVarArgs()) {
      // "Possible heap pollution from parameterized vararg type", as on the original.
      TypeMirror last = resolved.getParameterTypes().get(parameters.size() - 1);
      if (!isReifiable(((ArrayType) last).getComponentType())) {
        suppressed.add("unchecked");
      }
    }
    List<TypeMirror> signatureTypes = new ArrayList<>(resolved.getThrownTypes());
    signatureTypes.add(resolved.getReturnType());
    for (TypeVariable variable : resolved.getTypeVariables()) {
      signatureTypes.add(variable.getUpperBound());
    }
    for (TypeMirror type : signatureTypes) {
      if (containsRawType(type)) {
        suppressed.add("rawtypes");
      }
    }
    TypeMirror runtimeException = facts.elements.getTypeElement("java.lang.RuntimeException").asType();
    TypeMirror error = facts.elements.getTypeElement("java.lang.Error").asType();
    boolean throwsChecked = resolved.getThrownTypes().stream()
        .anyMatch(t -> !facts.types.isSubtype(t, runtimeException) && !facts.types.isSubtype(t, error));
    return new ExecutableDescriptor(
        element.getSimpleName().toString(),
        List.copyOf(access),
        List.copyOf(resolved.getTypeVariables()),
        List.copyOf(parameters),
        element.isVarArgs(),
        resolved.getReturnType(),
        List.copyOf(resolved.getThrownTypes()),
        facts.elements.isDeprecated(element),
        List.copyOf(suppressed),
        isMethod && throwsChecked);
  }

  /** JLS 4.7: a cast to this type is checked at run time. */
  static boolean isReifiable(TypeMirror type) {
    switch (type.getKind()) {
      case ARRAY:
        return isReifiable(((ArrayType) type).getComponentType());
      case TYPEVAR:
      case INTERSECTION:
      case UNION:
      case WILDCARD:
        return false;
      case DECLARED:
        DeclaredType declared = (DeclaredType) type;
        for (TypeMirror argument : declared.getTypeArguments()) {
          if (argument.getKind() != TypeKind.WILDCARD
              || ((WildcardType) argument).getExtendsBound() != null
              || ((WildcardType) argument).getSuperBound() != null) {
            return false;
          }
        }
        TypeMirror enclosing = declared.getEnclosingType();
        return enclosing.getKind() != TypeKind.DECLARED || isReifiable(enclosing);
      default:
        return true;
    }
  }

  /** Whether {@code type} mentions a raw use of a generic class (lint category rawtypes). */
  static boolean containsRawType(TypeMirror type) {
    switch (type.getKind()) {
      case ARRAY:
        return containsRawType(((ArrayType) type).getComponentType());
      case WILDCARD:
        WildcardType wildcard = (WildcardType) type;
        return (wildcard.getExtendsBound() != null && containsRawType(wildcard.getExtendsBound()))
            || (wildcard.getSuperBound() != null && containsRawType(wildcard.getSuperBound()));
      case DECLARED:
        DeclaredType declared = (DeclaredType) type;
        TypeElement element = (TypeElement) declared.asElement();
        if (declared.getTypeArguments().isEmpty() && !element.getTypeParameters().isEmpty()) {
          return true;
        }
        return declared.getTypeArguments().stream().anyMatch(DescriptorFactory::containsRawType);
      default:
        return false;
    }
  }
}
