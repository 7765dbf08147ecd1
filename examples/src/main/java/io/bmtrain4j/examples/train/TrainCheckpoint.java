package io.bmtrain4j.examples.train;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.optim.StateDicts;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * A training checkpoint at the same world size: each rank writes {@code rank-R.state} (its model
 * shards, the optimizer manager's state and the next step), atomically. Loading one written at
 * another world size fails with a clear error (resharding belongs to the checkpoint issue).
 */
public final class TrainCheckpoint {
  private TrainCheckpoint() {}

  static Path file(Path dir) {
    return dir.resolve("rank-" + Bmt.rank() + ".state");
  }

  public static void save(Path dir, int nextStep, Object model, OptimManager manager) throws IOException {
    Files.createDirectories(dir);
    Map<String, Tensor> state = new LinkedHashMap<>();
    state.put("next_step", torch.tensor(new long[] {nextStep}).reshape(new long[] {}));
    state.putAll(StateDicts.prefixed("model.", Bmt.shardStateDict(model)));
    state.putAll(StateDicts.prefixed("train.", manager.stateDict()));
    StateDicts.save(state, file(dir));
    Bmt.synchronize(); // every rank's file is complete before anyone reports the checkpoint
  }

  /** Restores model and manager; returns the step to continue from. */
  public static int load(Path dir, Object model, OptimManager manager) {
    Map<String, Tensor> state = StateDicts.load(file(dir));
    Bmt.loadShardStateDict(model, StateDicts.under("model.", state));
    manager.loadStateDict(StateDicts.under("train.", state));
    return (int) StateDicts.require(state, "next_step", new long[] {}).item().toLong();
  }

  public static boolean exists(Path dir) {
    return Files.isRegularFile(file(dir));
  }
}
