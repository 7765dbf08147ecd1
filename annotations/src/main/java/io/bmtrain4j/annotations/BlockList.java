package io.bmtrain4j.annotations;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks a {@code List<B>} or {@code B[]} field whose elements are checkpointed blocks run in
 * order, BMTrain's {@code TransformerBlockList}: while block {@code i} computes, block
 * {@code i+1}'s all-gather is in flight, and in backward block {@code i+1}'s reduce-scatter
 * overlaps block {@code i}'s recompute. The user's own loop over the list stays unchanged.
 *
 * <p>Rules the processor enforces: the field is a non-private, non-final, non-static instance
 * field of type {@code List<B>} (or a subtype of {@code List}) or {@code B[]}, where {@code B}
 * declares (or inherits) at least one {@link Distributed} field; {@code zeroLevel} is 2 or 3 and
 * {@code maxGatheredBlocks} at least 1. At run time, every element must be the generated
 * {@code Distributed<B>} instance when the constructor ends; otherwise construction fails naming
 * the index and the class to construct instead.
 */
@Documented
@Retention(RetentionPolicy.CLASS)
@Target(ElementType.FIELD)
public @interface BlockList {
  /** ZeRO stage of every block in the list; see {@link Checkpoint#zeroLevel()}. */
  int zeroLevel() default 3;

  /** Whether activations are recomputed in backward; see {@link Checkpoint#recompute()}. */
  boolean recompute() default true;

  /**
   * How many blocks may hold gathered parameters at once: {@code 2} (the default) lets the next
   * block's all-gather run while the current block computes (in backward, the previous block's);
   * {@code 1} turns prefetch off. Values above 2 act as 2: one block is prefetched.
   */
  int maxGatheredBlocks() default 2;

  /**
   * Whether a recompute leaves out each block's last matmul (early stop); see
   * {@link Checkpoint#earlyStop()}.
   */
  boolean earlyStop() default true;
}
