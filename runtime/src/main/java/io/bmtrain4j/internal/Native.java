package io.bmtrain4j.internal;

import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.PointerScope;

/**
 * Ownership of native objects across the user's {@link PointerScope}s.
 *
 * <p>[Note: ownership] Users free each step's temporaries with a {@code PointerScope} around the
 * step; every JavaCPP object created while a scope is open is released when it closes. The
 * runtime's long-lived buffers (shards, gathered buffers, gradient buffers, collectives in
 * flight, backward hooks) must not die with the step that happened to create them, so the
 * runtime takes them out of the scope with {@link #own} and closes them itself at a point it
 * controls. Closing twice is harmless in JavaCPP (the deallocator is cleared on the first).
 */
public final class Native {
  private Native() {}

  /**
   * Detaches {@code p}, created while the innermost scope of this thread was open (or with no
   * scope open), from that scope: the caller now owns it and must {@code close()} it.
   */
  public static <T extends Pointer> T own(T p) {
    PointerScope scope = PointerScope.getInnerScope();
    if (scope != null && p != null) {
      p.retainReference();
      scope.detach(p); // releases the scope's reference; ours remains
    }
    return p;
  }

  /**
   * Moves {@code p} from scope {@code from} (where it was created) to {@code to}, which then frees
   * it; with no enclosing scope the caller owns it. Used to free a block's temporaries at the
   * block's end while its outputs live on in the user's step scope.
   */
  public static <T extends Pointer> T moveTo(T p, PointerScope from, PointerScope to) {
    p.retainReference();
    from.detach(p); // the scope's reference is released; ours remains
    if (to != null) {
      to.attach(p); // the enclosing scope's reference
      p.releaseReference(); // drop ours: only the enclosing scope holds it now
    }
    return p;
  }

  /** Closes each non-null pointer. */
  public static void closeAll(Iterable<? extends Pointer> pointers) {
    for (Pointer p : pointers) {
      if (p != null) {
        p.close();
      }
    }
  }
}
