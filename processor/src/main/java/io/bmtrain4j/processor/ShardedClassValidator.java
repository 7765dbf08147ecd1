package io.bmtrain4j.processor;

import static io.bmtrain4j.processor.TypeFacts.annotation;
import static io.bmtrain4j.processor.TypeFacts.simpleName;

import java.util.List;
import java.util.Optional;
import java.util.Set;
import javax.lang.model.element.AnnotationMirror;
import javax.lang.model.element.AnnotationValue;
import javax.lang.model.element.ElementKind;
import javax.lang.model.element.ExecutableElement;
import javax.lang.model.element.Modifier;
import javax.lang.model.element.NestingKind;
import javax.lang.model.element.TypeElement;
import javax.lang.model.element.VariableElement;
import javax.lang.model.type.TypeMirror;
import javax.lang.model.util.ElementFilter;

/**
 * Step one of three: checks a class (and the annotated members it declares or inherits) against
 * the rules in the annotations' Javadoc and returns every violation at once, each on the narrowest
 * element. It never prints and never throws for user errors.
 */
final class ShardedClassValidator {
  private final TypeFacts facts;

  ShardedClassValidator(TypeFacts facts) {
    this.facts = facts;
  }

  ValidationReport validate(TypeElement type) {
    ValidationReport report = new ValidationReport();
    String generated = TypeFacts.generatedSimpleName(type);
    validateClass(type, generated, report);
    for (VariableElement field : facts.annotatedFields(type)) {
      validateField(field, report);
      TypeElement owner = (TypeElement) field.getEnclosingElement();
      if (!owner.equals(type)
          && !field.getModifiers().contains(Modifier.PRIVATE)
          && !facts.isVisibleFromPackageOf(type, field)) {
        String annotationName = simpleName(TypeFacts.fieldAnnotations(field).get(0));
        report.add(Message.FIELD_NOT_VISIBLE, type,
            annotationName, field.getSimpleName(), owner.getQualifiedName(), generated);
      }
    }
    validateMethods(type, report);
    warnAboutUnshardedModules(type, report);
    if (type.getModifiers().contains(Modifier.ABSTRACT)) {
      // [Note: abstract classes] Their members are checked here, for their subclasses' sake, but
      // an abstract Distributed<Name> could never be constructed: only concrete classes get one.
      report.skipGeneration();
    }
    return report;
  }

  /**
   * A libtorch module field the user left unannotated in a sharded class is usually an oversight:
   * nothing trains or saves it (BMTrain users expect every layer of the model to be). Its own
   * class's fields only; {@code @SuppressWarnings("bmtrain4j-unsharded")} says it is meant.
   */
  private void warnAboutUnshardedModules(TypeElement type, ValidationReport report) {
    for (VariableElement field : ElementFilter.fieldsIn(type.getEnclosedElements())) {
      if (field.getModifiers().contains(Modifier.STATIC) || !TypeFacts.fieldAnnotations(field).isEmpty()
          || !facts.isModule(field.asType())) {
        continue;
      }
      SuppressWarnings suppressed = field.getAnnotation(SuppressWarnings.class);
      if (suppressed != null && java.util.Arrays.asList(suppressed.value()).contains("bmtrain4j-unsharded")) {
        continue;
      }
      report.add(Message.UNSHARDED_MODULE, field, field.getSimpleName(), field.asType());
    }
  }

  private void validateClass(TypeElement type, String generated, ValidationReport report) {
    if (type.getKind() != ElementKind.CLASS) {
      report.add(Message.CLASS_KIND, type, type.getQualifiedName(),
          "an " + type.getKind().name().toLowerCase(java.util.Locale.ROOT).replace('_', ' '));
      return;
    }
    String name = type.getQualifiedName().toString();
    NestingKind nesting = type.getNestingKind();
    if (nesting == NestingKind.LOCAL || nesting == NestingKind.ANONYMOUS) {
      report.add(Message.CLASS_LOCAL, type, type.getSimpleName().length() == 0 ? "<anonymous>" : name);
      return;
    }
    if (nesting == NestingKind.MEMBER && !type.getModifiers().contains(Modifier.STATIC)) {
      report.add(Message.CLASS_INNER, type, name, generated);
    }
    if (type.getModifiers().contains(Modifier.FINAL)) {
      report.add(Message.CLASS_FINAL, type, name, generated);
    }
    if (TypeFacts.isPrivateOrInPrivate(type)) {
      report.add(Message.CLASS_PRIVATE, type, name, generated);
    }
    boolean accessibleConstructor = ElementFilter.constructorsIn(type.getEnclosedElements()).stream()
        .anyMatch(c -> !c.getModifiers().contains(Modifier.PRIVATE));
    if (!accessibleConstructor) {
      report.add(Message.CLASS_NO_CONSTRUCTOR, type, name, generated);
    }
  }

  private void validateField(VariableElement field, ValidationReport report) {
    List<String> present = TypeFacts.fieldAnnotations(field);
    if (present.size() > 1) {
      AnnotationMirror second = annotation(field, present.get(1)).orElseThrow();
      report.add(Message.CONFLICTING_ANNOTATIONS, field, second, null,
          field.getSimpleName(), simpleName(present.get(0)), simpleName(present.get(1)));
      return;
    }
    String annotationName = present.get(0);
    String simple = simpleName(annotationName);
    AnnotationMirror mirror = annotation(field, annotationName).orElseThrow();
    Set<Modifier> modifiers = field.getModifiers();
    Object name = field.getSimpleName();
    if (modifiers.contains(Modifier.PRIVATE)) {
      report.add(Message.FIELD_PRIVATE, field, mirror, null, simple, name);
    }
    if (modifiers.contains(Modifier.FINAL)) {
      report.add(Message.FIELD_FINAL, field, mirror, null, simple, name);
    }
    if (modifiers.contains(Modifier.STATIC)) {
      report.add(Message.FIELD_STATIC, field, mirror, null, simple, name);
    }
    TypeMirror type = field.asType();
    if (annotationName.equals(TypeFacts.DISTRIBUTED)) {
      if (!facts.isTensor(type) && !facts.isModule(type)) {
        report.add(Message.DISTRIBUTED_WRONG_TYPE, field, mirror, null, name, type);
      }
      return;
    }
    if (annotationName.equals(TypeFacts.CHECKPOINT)) {
      if (!facts.hasDistributedFields(type)) {
        report.add(Message.CHECKPOINT_NOTHING_TO_SHARD, field, mirror, null, name, type);
      }
    } else {
      Optional<TypeMirror> element = facts.blockListElement(type);
      if (element.isEmpty()) {
        report.add(Message.BLOCK_LIST_NOT_A_LIST, field, mirror, null, name, type);
      } else if (!facts.hasDistributedFields(element.get())) {
        report.add(Message.BLOCK_LIST_NOTHING_TO_SHARD, field, mirror, null, name, element.get());
      }
    }
    // The runtime's BlockOptions would reject these when the model is constructed; say it now.
    int zeroLevel = (Integer) facts.value(mirror, "zeroLevel").getValue();
    if (zeroLevel != 2 && zeroLevel != 3) {
      AnnotationValue written = TypeFacts.explicitValue(mirror, "zeroLevel");
      report.add(Message.ZERO_LEVEL, field, mirror, written, simple, name, zeroLevel);
    }
    int maxGathered = (Integer) facts.value(mirror, "maxGatheredBlocks").getValue();
    if (maxGathered < 1) {
      AnnotationValue written = TypeFacts.explicitValue(mirror, "maxGatheredBlocks");
      report.add(Message.MAX_GATHERED_BLOCKS, field, mirror, written, simple, name, maxGathered);
    }
  }

  private void validateMethods(TypeElement type, ValidationReport report) {
    boolean hasForward = false;
    boolean hasShardedState = !facts.annotatedFields(type).isEmpty();
    for (TypeFacts.EffectiveMethod effective : facts.effectiveMethods(type)) {
      ExecutableElement method = effective.method();
      Set<Modifier> modifiers = method.getModifiers();
      String signature = signature(method);
      if (effective.isForward() && !modifiers.contains(Modifier.PRIVATE)
          && facts.isVisibleFromPackageOf(type, method)) {
        if (modifiers.contains(Modifier.STATIC)) {
          report.add(Message.FORWARD_STATIC, method, signature);
        } else if (modifiers.contains(Modifier.FINAL)) {
          report.add(Message.FORWARD_FINAL, method, signature);
        } else {
          hasForward = true;
        }
      }
      Optional<AnnotationMirror> entryPoint = annotation(method, TypeFacts.ENTRY_POINT);
      if (entryPoint.isPresent()) {
        for (Modifier bad : List.of(Modifier.PRIVATE, Modifier.STATIC, Modifier.FINAL)) {
          if (modifiers.contains(bad)) {
            report.add(Message.ENTRY_POINT_MODIFIER, method, entryPoint.get(), null, signature, bad);
          }
        }
        if (!hasShardedState) {
          report.add(Message.ENTRY_POINT_NOTHING_TO_SHARD, method, entryPoint.get(), null,
              signature, type.getQualifiedName());
        }
      }
    }
    if (!hasForward && type.getKind() == ElementKind.CLASS) {
      report.add(Message.NO_FORWARD, type, type.getQualifiedName());
    }
  }

  /** {@code Block.forward(Tensor, Tensor)}, for messages. */
  static String signature(ExecutableElement method) {
    StringBuilder s = new StringBuilder();
    s.append(method.getEnclosingElement().getSimpleName()).append('.').append(method.getSimpleName()).append('(');
    List<? extends VariableElement> parameters = method.getParameters();
    for (int i = 0; i < parameters.size(); i++) {
      if (i > 0) {
        s.append(", ");
      }
      s.append(parameters.get(i).asType());
    }
    return s.append(')').toString();
  }
}
