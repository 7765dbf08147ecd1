package io.bmtrain4j.annotations;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks a parameter field as sharded (ZeRO-3 across steps): every rank keeps 1/world of it, and it
 * is whole only while a step needs it, from the forward that reads it until its backward (a block
 * at ZeRO level 3, see {@link Checkpoint#zeroLevel()}, releases it in between and gathers it again
 * for backward).
 *
 * <p>The annotated field must be
 * <ul>
 *   <li>an instance field that is neither {@code private}, {@code final} nor {@code static}
 *       (the generated subclass registers it from its constructor, without reflection);
 *   <li>of type {@code org.bytedeco.pytorch.Tensor} (one parameter) or of a subtype of
 *       {@code org.bytedeco.pytorch.Module} such as {@code LinearImpl} (all of its parameters).
 * </ul>
 *
 * <p>The declaring class must be a non-final, non-private, top-level or static nested class with at
 * least one non-private constructor and one non-private, non-static, non-final {@code forward}
 * method. The processor generates the final class {@code Distributed<Name>} in the same package;
 * construct it instead of the annotated one (to extend the model, subclass the annotated class:
 * the subclass gets a {@code Distributed<Name>} of its own). All parameters of a class are packed
 * into one flat, evenly partitioned buffer (one all-gather per class instance).
 *
 * <p>The field is assigned once, by the constructor, and never reassigned: the runtime swaps the
 * tensor's storage between the gathered buffer and an empty one, so references stay valid.
 */
@Documented
@Retention(RetentionPolicy.CLASS)
@Target(ElementType.FIELD)
public @interface Distributed {}
