package io.bmtrain4j.zero;

/**
 * The user's forward (or another entry point), called by the runtime with the arguments it
 * chooses: the caller's in forward, detached copies in a recompute. Generated code passes
 * {@code a -> super.forward((Tensor) a[0], ...)}.
 */
@FunctionalInterface
public interface ForwardBody<R> {
  R call(Object[] args);
}
