package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.store.ShardedCheckpoint;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.optim.LossScale;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.optim.lr.Cosine;
import io.bmtrain4j.testing.RanksAsThreads;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;

/** A Net trained with Adam through the manager, for sharded-checkpoint tests (ranks of the current context). */
public final class ShardedCheckpointRun {
  final Net net;
  final AdamOptimizer adam;
  final OptimManager manager;

  public ShardedCheckpointRun() {
    net = (Net) CheckpointModels.fresh(0);
    adam = new AdamOptimizer(Bmt.parameters(net), AdamOptions.builder().lr(1e-3).weightDecay(0.01).build());
    manager = new OptimManager(LossScale.dynamic(256, 2, 2, 1, 1 << 16)).add(adam, new Cosine(adam, 1e-3, 1, 20));
  }

  /** Trains steps [from, to) on this rank's share of the global batch; returns the losses (mean over ranks). */
  public List<Double> train(int from, int to) {
    int world = Bmt.worldSize();
    int per = Training.BATCH / world;
    List<Double> losses = new ArrayList<>();
    for (int step = from; step < to; step++) {
      try (PointerScope scope = new PointerScope()) {
        manager.zeroGrad();
        Tensor l = Training.loss(net.forward(Training.tokens(step, Bmt.rank() * per, per)), step, Bmt.rank() * per, per);
        manager.backward(l);
        manager.step();
        losses.add(Bmt.sumLoss(l));
      }
    }
    return losses;
  }

  public void save(Path dir, long step) {
    ShardedCheckpoint.save(dir, net, manager, step);
  }

  /**
   * Loads under the RNG lock: the manager restores the default CPU generator's saved state, which
   * ranks as threads share, and another rank building its model meanwhile (under the lock, from
   * seed 0) would draw its unsharded layer's weights from the restored state instead.
   */
  public long load(Path dir) {
    synchronized (RanksAsThreads.RNG_LOCK) {
      return ShardedCheckpoint.load(dir, net, manager);
    }
  }

  public Object net() {
    return net;
  }

  public OptimManager manager() {
    return manager;
  }

  /** Fills one shard with NaN, as a diverged run leaves its weights. */
  public void poison() {
    try (org.bytedeco.pytorch.NoGradGuard g = new org.bytedeco.pytorch.NoGradGuard()) {
      Bmt.parameters(net).get(0).local().fill_(new org.bytedeco.pytorch.Scalar(Double.NaN));
    }
  }

  public float[] evalOutputs() {
    return CheckpointModels.evalOutputs(net);
  }

  /**
   * For the kill tests: save checkpoints 1, 2, 3, ... under {@code dir} until killed; with
   * {@code async}, each save is written in the background while the next step trains ("saved N"
   * once the next save has waited for it).
   */
  public static void saveForever(Path dir, boolean async) {
    ShardedCheckpointRun run = new ShardedCheckpointRun();
    run.train(0, 1);
    for (long step = 1; ; step++) {
      if (async) {
        ShardedCheckpoint.saveAsync(dir, run.net, run.manager, step, 0);
        run.train((int) step, (int) step + 1);
        if (step > 1) {
          System.out.println("saved " + (step - 1)); // saveAsync waited for it before starting this one
        }
      } else {
        run.save(dir, step);
        System.out.println("saved " + step);
      }
    }
  }

  /** Starts saving step {@code step} in the background (see {@link ShardedCheckpoint#saveAsync}). */
  public ShardedCheckpoint.PendingSave saveAsync(Path dir, long step) {
    return ShardedCheckpoint.saveAsync(dir, net, manager, step, 0);
  }
}
