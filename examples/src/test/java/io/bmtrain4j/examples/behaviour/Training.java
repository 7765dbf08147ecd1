package io.bmtrain4j.examples.behaviour;

import static io.bmtrain4j.testing.TensorAsserts.values;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.testing.RanksAsThreads;
import io.bmtrain4j.zero.BlockOptions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * Trains {@link Net} for a few SGD steps, plainly (one process, whole batch) or sharded (ranks as
 * threads, each on its slice of the batch), and reports losses and the last step's gradients.
 */
final class Training {
  static final int BATCH = 4;
  static final int SEQ = 5;
  static final double LR = 0.1;

  /** What one run saw: the loss of each step (mean over ranks) and the last step's gradients. */
  record Result(List<Double> losses, Map<String, float[]> gradients, List<Net> models) {}

  /** How to run. {@code setup} runs on the freshly built model (freeze parameters, switch to eval). */
  record Plan(int world, BlockOptions options, double dropout, int steps, int microBatches, Consumer<Net> setup) {
    static Plan of(int world, BlockOptions options) {
      return new Plan(world, options, 0, 3, 1, n -> {});
    }

    Plan withDropout(double p) {
      return new Plan(world, options, p, steps, microBatches, setup);
    }

    Plan withMicroBatches(int k) {
      return new Plan(world, options, dropout, steps, k, setup);
    }

    Plan withSetup(Consumer<Net> s) {
      return new Plan(world, options, dropout, steps, microBatches, s);
    }
  }

  private Training() {}

  static Tensor tokens(int step, int from, int count) {
    return torch.arange(new Scalar(BATCH * SEQ)).mul(new Scalar(7)).add(new Scalar(step * 3))
        .remainder(new Scalar(Net.VOCAB)).view(BATCH, SEQ).narrow(0, from, count);
  }

  static Tensor loss(Tensor logits, int step, int from, int count) {
    Tensor target = tokens(step, from, count).add(new Scalar(1)).remainder(new Scalar(Net.VOCAB));
    return torch.cross_entropy_loss(logits.reshape(-1, Net.VOCAB), target.reshape(-1));
  }

  static Result plain(Plan plan) {
    Net net;
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(0);
      net = new Net(plan.dropout(), false);
      plan.setup().accept(net);
      List<Double> losses = new ArrayList<>();
      Map<String, float[]> grads = new LinkedHashMap<>();
      for (int step = 0; step < plan.steps(); step++) {
        net.namedParameters().values().forEach(p -> p.mutable_grad().put(new Tensor()));
        Tensor l = loss(net.forward(tokens(step, 0, BATCH)), step, 0, BATCH);
        l.backward();
        losses.add((double) l.item_float());
        grads.clear();
        net.namedParameters().forEach((k, p) -> {
          if (p.grad().defined()) {
            grads.put(k, values(p.grad()));
          }
        });
        try (NoGradGuard g = new NoGradGuard()) {
          for (Tensor p : net.namedParameters().values()) {
            if (p.grad().defined()) {
              p.sub_(p.grad().mul(new Scalar(LR)));
            }
          }
        }
      }
      return new Result(losses, grads, List.of(net));
    }
  }

  /** Every rank's result, in rank order (ranks as threads of this JVM). */
  static List<Result> sharded(Plan plan) {
    return RanksAsThreads.run(plan.world(), 0, Duration.ofSeconds(60), ctx -> onRank(plan, ctx.rank(), false));
  }

  /**
   * Trains the sharded model on this rank (the current context): on its slice of the batch, or
   * on the whole batch when {@code wholeBatchOnEveryRank} (then every rank computes exactly what
   * the plain model does, dropout masks included, when each rank has its own generator).
   */
  static Result onRank(Plan plan, int rank, boolean wholeBatchOnEveryRank) {
    Net net;
    synchronized (RanksAsThreads.RNG_LOCK) {
      torch.manual_seed(0);
      net = new DistributedNet(plan.dropout(), true);
    }
    Bmt.configureBlocks(net, plan.options());
    plan.setup().accept(net);
    int per = wholeBatchOnEveryRank ? BATCH : BATCH / plan.world();
    int first = wholeBatchOnEveryRank ? 0 : rank * per;
    int micro = per / plan.microBatches();
    List<Double> losses = new ArrayList<>();
    Map<String, float[]> grads = new LinkedHashMap<>();
    for (int step = 0; step < plan.steps(); step++) {
      try (PointerScope scope = new PointerScope()) {
        shardedStep(plan, net, step, first, micro, losses, grads);
      }
    }
    return new Result(losses, grads, List.of(net));
  }

  private static void shardedStep(Plan plan, Net net, int step, int first, int micro, List<Double> losses,
      Map<String, float[]> grads) {
    {
      for (ShardedParameter p : Bmt.parameters(net)) {
        p.zeroBlockGradients();
      }
      double stepLoss = 0;
      for (int m = 0; m < plan.microBatches(); m++) {
        int from = first + m * micro;
        Tensor l;
        // With ranks as threads, a world of one may draw dropout masks: keep the generator to itself.
        synchronized (plan.world() == 1 ? RanksAsThreads.RNG_LOCK : new Object()) {
          l = loss(net.forward(tokens(step, from, micro)), step, from, micro);
          l.div(new Scalar((double) plan.microBatches())).backward();
        }
        stepLoss += Bmt.sumLoss(l) / plan.microBatches();
      }
      losses.add(stepLoss);
      grads.clear();
      Bmt.gatherGradients(net).forEach((k, v) -> grads.put(k, values(v)));
      try (NoGradGuard g = new NoGradGuard()) {
        for (ShardedParameter p : Bmt.parameters(net)) {
          Tensor grad = p.grad();
          if (grad != null) {
            p.local().sub_(grad.mul(new Scalar(LR)));
          }
        }
      }
    }
  }
}
