package io.bmtrain4j.examples.behaviour;

import static io.bmtrain4j.testing.TensorAsserts.values;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.testing.RanksAsThreads;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** Sharded {@link Net}s for checkpoint tests in other packages (Net's fields are package-private). */
public final class CheckpointModels {
  private CheckpointModels() {}

  public static Object fresh(long seed) {
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(seed);
      return new DistributedNet(0, true);
    }
  }

  public static Object withoutHead(long seed) {
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(seed);
      return new DistributedSmallNet();
    }
  }

  /** A model trained for {@code steps} SGD steps on this rank's slice (so it differs from any fresh one). */
  public static Object trained(int steps, int rank) {
    Net net = (Net) fresh(0);
    int world = Bmt.worldSize();
    int per = Training.BATCH / world;
    for (int step = 0; step < steps; step++) {
      try (PointerScope scope = new PointerScope()) {
        Training.loss(net.forward(Training.tokens(step, rank * per, per)), step, rank * per, per).backward();
        try (NoGradGuard g = new NoGradGuard()) {
          for (ShardedParameter p : Bmt.parameters(net)) {
            Tensor grad = p.grad();
            if (grad != null) {
              p.local().sub_(grad.mul(new Scalar(0.5)));
            }
            p.zeroBlockGradients();
          }
        }
      }
    }
    return net;
  }

  /** Evaluation logits on a fixed batch (a collective: every rank calls it). */
  public static float[] evalOutputs(Object model) {
    Net net = (Net) model;
    try (NoGradGuard g = new NoGradGuard(); PointerScope scope = new PointerScope()) {
      return values(net.forward(Training.tokens(5, 0, Training.BATCH)));
    }
  }
}
