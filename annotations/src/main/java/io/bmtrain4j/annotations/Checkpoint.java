package io.bmtrain4j.annotations;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks a field holding one block (an instance of a class with {@link Distributed} fields) as a
 * checkpointed block, BMTrain's {@code bmt.CheckpointBlock}: its forward runs without keeping
 * activations and is recomputed in backward, and its gradients are reduce-scattered into the
 * shards as soon as its backward ends.
 *
 * <p>Rules the processor enforces: the field is a non-private, non-final, non-static instance
 * field whose type is a class that declares (or inherits) at least one {@link Distributed} field.
 * It cannot also carry {@link Distributed} or {@link BlockList}. {@code zeroLevel} is 2 or 3 and
 * {@code maxGatheredBlocks} at least 1. At run time the field must hold the generated
 * {@code Distributed<Block>} instance once the constructor ends.
 */
@Documented
@Retention(RetentionPolicy.CLASS)
@Target(ElementType.FIELD)
public @interface Checkpoint {
  /**
   * ZeRO stage of this block: {@code 3} releases the gathered parameters after forward and
   * gathers them again for backward; {@code 2} keeps them gathered from forward to backward.
   */
  int zeroLevel() default 3;

  /** Whether activations are dropped in forward and recomputed in backward. */
  boolean recompute() default true;

  /**
   * How many blocks may hold gathered parameters at once while this block's backward runs: with
   * {@code 2} (the default) the checkpointed block that ran just before this one in forward, which
   * backward reaches next, is gathered meanwhile (unless it is ZeRO-2, hence still gathered);
   * {@code 1} turns that prefetch off. Forward is the same either way: a single block has no next
   * block to prefetch. Values above 2 act as 2.
   */
  int maxGatheredBlocks() default 2;

  /**
   * Early stop: whether a recompute leaves out the block's last matmul, the one its forward
   * computes with {@code Bmt.lastMatmul} ({@code EarlyStop.lastMatmul}). Backward never reads
   * that product, so the recompute stops before it, and backward takes the matmul's gradients
   * from its operands. {@code false} recomputes it (to compare). Without {@code recompute} or a
   * {@code lastMatmul} call there is nothing to leave out.
   */
  boolean earlyStop() default true;
}
