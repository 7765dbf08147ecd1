package io.bmtrain4j.annotations;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks a method other than {@code forward} that reads this class's {@link Distributed}
 * parameters, such as a tied LM head or a generation loop. The generated subclass overrides it so
 * that the parameters are gathered while it runs, exactly as around {@code forward}.
 *
 * <p>Rules the processor enforces: the method is non-private, non-static and non-final, in a class
 * with annotated fields ({@link Distributed}, {@link Checkpoint} or {@link BlockList}). The
 * generated override gathers this class's own parameters; blocks it holds gather theirs when
 * their own {@code forward} runs.
 */
@Documented
@Retention(RetentionPolicy.CLASS)
@Target(ElementType.METHOD)
public @interface EntryPoint {}
