package io.bmtrain4j.zero;

import java.util.ArrayList;
import java.util.List;

/**
 * The checkpointed blocks one outermost forward ran, in order. Backward walks it in reverse: the
 * block before the current one is prefetched, and the first block drains the last reduce-scatter.
 * The model's outermost forward opens a tape (held by the model tree's step state, see
 * ShardedModuleRuntime); its blocks record into it.
 */
final class ForwardTape {
  private final List<BlockCall> calls = new ArrayList<>();

  int record(BlockCall call) {
    calls.add(call);
    return calls.size() - 1;
  }

  BlockCall get(int index) {
    return index >= 0 && index < calls.size() ? calls.get(index) : null;
  }
}
