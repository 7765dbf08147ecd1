package io.bmtrain4j.processor;

import javax.tools.Diagnostic.Kind;

/**
 * Every diagnostic the processor can report, each with a stable tag (quoted in the message, so a
 * user can search for it) and the fix, after MapStruct's {@code Message}. Arguments are
 * {@link String#format} arguments shared by the text and the fix.
 */
enum Message {
  FIELD_PRIVATE(
      "field-private",
      "@%1$s field %2$s is private",
      "make it package-private or protected: the generated subclass reads it directly, without"
          + " reflection"),
  FIELD_FINAL(
      "field-final",
      "@%1$s field %2$s is final",
      "remove 'final': the field is assigned by your constructor and registered by the generated"
          + " subclass"),
  FIELD_STATIC(
      "field-static",
      "@%1$s field %2$s is static",
      "make it an instance field: parameters and blocks belong to one model instance"),
  FIELD_NOT_VISIBLE(
      "field-not-visible",
      "@%1$s field %2$s of %3$s is package-private, so the generated %4$s in another package cannot"
          + " read it",
      "make %2$s protected"),
  CONFLICTING_ANNOTATIONS(
      "conflicting-annotations",
      "field %1$s carries both @%2$s and @%3$s",
      "keep one: @Distributed for a Tensor or libtorch Module, @Checkpoint for one block,"
          + " @BlockList for a List<B> or B[] of blocks"),
  DISTRIBUTED_WRONG_TYPE(
      "distributed-type",
      "@Distributed field %1$s has type %2$s, which is neither org.bytedeco.pytorch.Tensor nor a"
          + " subtype of org.bytedeco.pytorch.Module",
      "declare it as a Tensor (one parameter) or a libtorch Module such as LinearImpl (all its"
          + " parameters); for a block class of your own use @Checkpoint, for a list of blocks"
          + " @BlockList"),
  CHECKPOINT_NOTHING_TO_SHARD(
      "checkpoint-nothing-to-shard",
      "@Checkpoint field %1$s has type %2$s, which has nothing to shard: it is not a class that"
          + " declares or inherits @Distributed fields",
      "give the block class @Distributed Tensor or Module fields, or use @Distributed on this"
          + " field if it is a Tensor or libtorch Module"),
  BLOCK_LIST_NOT_A_LIST(
      "block-list-type",
      "@BlockList field %1$s has type %2$s, which is not a List<B> (or a subtype of List) nor an"
          + " array B[]",
      "declare it as List<B> or B[] where B is your block class, e.g. List<TransformerBlock>;"
          + " for a single block use @Checkpoint"),
  BLOCK_LIST_NOTHING_TO_SHARD(
      "block-list-nothing-to-shard",
      "@BlockList field %1$s holds elements of type %2$s, which has nothing to shard: it is not a"
          + " class that declares or inherits @Distributed fields",
      "give the block class @Distributed Tensor or Module fields"),
  ZERO_LEVEL(
      "zero-level",
      "@%1$s(zeroLevel = %3$d) on field %2$s is not a supported ZeRO level",
      "use zeroLevel = 3 (release after forward, gather again for backward) or 2 (keep gathered"
          + " from forward to backward)"),
  MAX_GATHERED_BLOCKS(
      "max-gathered-blocks",
      "@%1$s(maxGatheredBlocks = %3$d) on field %2$s is less than 1",
      "use 2 (the default: prefetch the next block while one computes) or 1 (no prefetch)"),
  CLASS_KIND(
      "class-kind",
      "%1$s is %2$s, and bmtrain4j can only shard a class",
      "declare the model as a plain (non-enum, non-record) class"),
  CLASS_FINAL(
      "class-final",
      "class %1$s is final, so bmtrain4j cannot generate its sharded subclass %2$s",
      "remove 'final' from %1$s"),
  CLASS_PRIVATE(
      "class-private",
      "class %1$s is private (or nested in a private class), so the generated %2$s cannot extend"
          + " it",
      "make %1$s package-private or wider"),
  CLASS_INNER(
      "class-inner",
      "class %1$s is an inner (non-static) class",
      "declare it 'static', so the generated %2$s can be constructed without an enclosing"
          + " instance"),
  CLASS_LOCAL(
      "class-local",
      "class %1$s is a local or anonymous class",
      "move it to a top-level or static nested class"),
  CLASS_NO_CONSTRUCTOR(
      "class-constructor",
      "class %1$s has only private constructors, so the generated %2$s cannot call any of them",
      "make at least one constructor package-private, protected or public"),
  NO_FORWARD(
      "no-forward",
      "class %1$s has no non-private forward method, declared or inherited",
      "declare a non-private, non-static, non-final forward(...) method; mark other methods that"
          + " read parameters (a tied head, a generation loop) with @EntryPoint"),
  FORWARD_FINAL(
      "forward-final",
      "forward method %1$s is final, so the generated subclass cannot gather parameters around it",
      "remove 'final' from %1$s"),
  FORWARD_STATIC(
      "forward-static",
      "forward method %1$s is static",
      "make it an instance method: it reads the instance's parameters"),
  ENTRY_POINT_MODIFIER(
      "entry-point-modifier",
      "@EntryPoint method %1$s is %2$s, so the generated subclass cannot override it",
      "make it non-private, non-static and non-final"),
  ENTRY_POINT_NOTHING_TO_SHARD(
      "entry-point-nothing-to-shard",
      "@EntryPoint method %1$s is in %2$s, which declares or inherits no @Distributed, @Checkpoint"
          + " or @BlockList field",
      "annotate the parameters it reads with @Distributed, or remove @EntryPoint"),
  UNSHARDED_MODULE(
      "unsharded-module",
      "field %1$s is a libtorch module (%2$s) without @Distributed: its parameters are neither"
          + " sharded, nor updated by bmtrain4j's optimizers, nor saved in its checkpoints",
      "annotate it @Distributed; if it is meant to stay out of training (frozen, or trained by"
          + " hand), add @SuppressWarnings(\"bmtrain4j-unsharded\") to the field",
      Kind.WARNING),
  PROCESSOR_FAILED(
      "internal",
      "bmtrain4j processor failed on %1$s: %2$s",
      "this is a bug in bmtrain4j; please report it with this message and the class"),
  NOT_GENERATED(
      "not-generated",
      "no %2$s is generated for %1$s, which only inherits bmtrain4j annotations: %3$s",
      "fix the cause above if you mean to construct %2$s",
      Kind.NOTE);

  private final String tag;
  private final String text;
  private final String fix;
  private final Kind kind;

  Message(String tag, String text, String fix) {
    this(tag, text, fix, Kind.ERROR);
  }

  Message(String tag, String text, String fix, Kind kind) {
    this.tag = tag;
    this.text = text;
    this.fix = fix;
    this.kind = kind;
  }

  Kind kind() {
    return kind;
  }

  String tag() {
    return tag;
  }

  /** The text without the fix, e.g. to nest it in another message. */
  String text(Object... args) {
    return String.format(text, args);
  }

  /** {@code "[bmtrain4j:tag] text. Fix: fix."} */
  String format(Object... args) {
    return "[bmtrain4j:" + tag + "] " + String.format(text, args) + ". Fix: "
        + String.format(fix, args) + ".";
  }
}
