package io.bmtrain4j.processor;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import javax.annotation.processing.Messager;
import javax.lang.model.element.AnnotationMirror;
import javax.lang.model.element.AnnotationValue;
import javax.lang.model.element.Element;
import javax.tools.Diagnostic.Kind;

/**
 * The diagnostics found for one class, as Dagger's {@code ValidationReport}: the validator never
 * prints, it returns a report; the processor prints it (once per diagnostic, even where two classes
 * share a superclass) and generates code only for a clean report.
 */
final class ValidationReport {
  /** One diagnostic on the narrowest element, with the annotation (and value) it is about. */
  record Item(
      Message message,
      String text,
      Element element,
      AnnotationMirror annotation,
      AnnotationValue value) {

    /** Identity across rounds and classes, to print each diagnostic once. */
    String key() {
      Element enclosing = element.getEnclosingElement();
      return text + "@" + element.getKind() + ":" + element + ":" + (enclosing == null ? "" : enclosing);
    }

    void printTo(Messager messager, Kind kind) {
      if (annotation != null && value != null) {
        messager.printMessage(kind, text, element, annotation, value);
      } else if (annotation != null) {
        messager.printMessage(kind, text, element, annotation);
      } else {
        messager.printMessage(kind, text, element);
      }
    }
  }

  private final List<Item> items = new ArrayList<>();
  /** Set when the class is valid but nothing should be generated for it (abstract). */
  private boolean skipGeneration;

  void add(Message message, Element element, Object... args) {
    add(message, element, null, null, args);
  }

  void add(
      Message message,
      Element element,
      AnnotationMirror annotation,
      AnnotationValue value,
      Object... args) {
    items.add(new Item(message, message.format(args), Objects.requireNonNull(element), annotation, value));
  }

  void addAll(ValidationReport other) {
    items.addAll(other.items);
  }

  void skipGeneration() {
    skipGeneration = true;
  }

  boolean shouldGenerate() {
    return isClean() && !skipGeneration;
  }

  boolean isClean() {
    return items.stream().noneMatch(i -> i.message().kind() == Kind.ERROR);
  }

  List<Item> items() {
    return List.copyOf(items);
  }

  /** Prints every item not printed before (keys in {@code printed}). */
  void printTo(Messager messager, Set<String> printed) {
    for (Item item : items) {
      if (printed.add(item.key())) {
        item.printTo(messager, item.message().kind());
      }
    }
  }
}
