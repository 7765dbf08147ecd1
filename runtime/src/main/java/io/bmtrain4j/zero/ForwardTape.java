package io.bmtrain4j.zero;

import java.util.ArrayList;
import java.util.List;

/**
 * The checkpointed blocks one outermost forward ran, in order. Backward walks it in reverse: the
 * block before the current one is prefetched, and the first block drains the last reduce-scatter.
 * The outermost sharded module opens a tape for the current thread; blocks record into it.
 */
final class ForwardTape {
  private static final ThreadLocal<ForwardTape> CURRENT = new ThreadLocal<>();
  private final List<BlockCall> calls = new ArrayList<>();

  static ForwardTape current() {
    return CURRENT.get();
  }

  static ForwardTape begin() {
    ForwardTape tape = new ForwardTape();
    CURRENT.set(tape);
    return tape;
  }

  static void end() {
    CURRENT.remove();
  }

  int record(BlockCall call) {
    calls.add(call);
    return calls.size() - 1;
  }

  BlockCall get(int index) {
    return index >= 0 && index < calls.size() ? calls.get(index) : null;
  }
}
