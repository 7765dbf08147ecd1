package io.bmtrain4j.init;

import java.util.Collections;
import java.util.Map;
import java.util.WeakHashMap;
import org.bytedeco.pytorch.Tensor;

/**
 * The parameters declared with {@code Bmt.parameter(init, shape...)} whose values are not drawn
 * yet. Their storage is allocated but never written (so the OS gives it no physical pages), the
 * sharded group skips them when it packs the shard, and {@code Bmt.initParameters} fills each
 * rank's slice. Keys are the user's tensor objects, weakly held.
 */
public final class DeferredParameters {
  private static final Map<Tensor, Initializer> PENDING = Collections.synchronizedMap(new WeakHashMap<>());

  private DeferredParameters() {}

  public static void register(Tensor parameter, Initializer init) {
    PENDING.put(parameter, init);
  }

  /** The initializer of {@code parameter}, removing it from the registry; null if it was not deferred. */
  public static Initializer take(Tensor parameter) {
    return PENDING.remove(parameter);
  }
}
