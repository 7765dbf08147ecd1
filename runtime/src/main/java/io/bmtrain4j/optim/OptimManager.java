package io.bmtrain4j.optim;

import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.dist.DistContext;
import io.bmtrain4j.dist.ReduceOperation;
import io.bmtrain4j.optim.lr.LrScheduler;
import io.bmtrain4j.zero.ParameterGroup;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * BMTrain's training-loop manager:
 * {@code zeroGrad(); backward(loss); clipGradNorm(1.0); step();}. It scales the loss, completes
 * the gradient reductions, skips the step on every rank when any rank's gradients hold an inf or
 * NaN (lowering a dynamic scale), unscales, clips by the global norm, and steps the optimizers and
 * their schedulers.
 *
 * <p>Gradients are averaged across ranks by the reduce-scatter itself, so the loss scale is not
 * divided by the world size here (BMTrain divides the scale and sums instead: the same result).
 */
public final class OptimManager {
  private final LossScale lossScale;
  private final List<ShardedOptimizer> optimizers = new ArrayList<>();
  private final List<LrScheduler> schedulers = new ArrayList<>();
  private final Map<ShardedParameter, ShardedOptimizer> owners = new IdentityHashMap<>();
  private final Map<String, ShardedOptimizer> ownersByName = new LinkedHashMap<>();
  private double scale;
  private int cleanSteps;
  private long skippedSteps;

  public OptimManager(LossScale lossScale) {
    this.lossScale = lossScale;
    this.scale = lossScale.initial();
  }

  /** Adds an optimizer and its scheduler (null for none). A parameter may belong to one optimizer only. */
  public OptimManager add(ShardedOptimizer optimizer, LrScheduler scheduler) {
    for (ShardedParameter p : optimizer.parameters()) {
      ShardedOptimizer other = ownersByName.get(p.name());
      if (owners.containsKey(p) || other != null) {
        throw new IllegalArgumentException("parameter " + p.name() + " is already updated by another optimizer of this manager:"
            + " give each parameter to exactly one optimizer");
      }
    }
    for (ShardedParameter p : optimizer.parameters()) {
      owners.put(p, optimizer);
      ownersByName.put(p.name(), optimizer);
    }
    optimizers.add(optimizer);
    schedulers.add(scheduler);
    return this;
  }

  /** Whether a loss scale is in use: then overflowing steps are skipped by {@link #step()} itself. */
  public boolean lossScaleEnabled() {
    return lossScale.enabled();
  }

  public double lossScale() {
    return scale;
  }

  public long skippedSteps() {
    return skippedSteps;
  }

  public void zeroGrad() {
    for (ShardedOptimizer o : optimizers) {
      o.zeroGrad();
    }
  }

  /** {@code (loss * scale).backward()}. */
  public void backward(Tensor loss) {
    if (scale == 1.0) {
      loss.backward();
    } else {
      loss.mul(new Scalar(scale)).backward();
    }
  }

  /** The distinct shard gradients of this manager's parameters, after completing every pending reduction. */
  private List<Tensor> shardGradients() {
    Map<ParameterGroup, Boolean> seen = new IdentityHashMap<>();
    List<Tensor> out = new ArrayList<>();
    for (ShardedOptimizer o : optimizers) {
      for (ShardedParameter p : o.parameters()) {
        p.grad(); // completes the reductions still pending
        if (seen.put(p.group(), true) == null && p.group().shardGrad() != null) {
          out.add(p.group().shardGrad());
        }
      }
    }
    return out;
  }

  private Communicator communicator() {
    return DistContext.current().communicator();
  }

  /**
   * Scales every gradient so that their global L2 norm (over all ranks, loss scale removed) is at
   * most {@code maxNorm}; returns the norm before clipping. A collective.
   */
  public double clipGradNorm(double maxNorm) {
    List<Tensor> grads = shardGradients();
    try (NoGradGuard g = new NoGradGuard()) {
      // On the gradients' device (a CPU accumulator cannot take CUDA values in place).
      org.bytedeco.pytorch.TensorOptions opts = new org.bytedeco.pytorch.TensorOptions()
          .dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Double));
      if (!grads.isEmpty()) {
        opts = opts.device(new org.bytedeco.pytorch.DeviceOptional(grads.get(0).device()));
      }
      Tensor sumSq = torch.zeros(new long[] {1}, opts);
      for (Tensor t : grads) {
        sumSq.add_(t.to(torch.ScalarType.Double).pow(new Scalar(2)).sum());
      }
      communicator().allReduce(sumSq, ReduceOperation.SUM).await();
      double norm = Math.sqrt(sumSq.item().toDouble()) / scale;
      double coefficient = maxNorm / (norm + 1e-6);
      if (coefficient < 1) {
        for (Tensor t : grads) {
          t.mul_(new Scalar(coefficient));
        }
      }
      return norm;
    }
  }

  /**
   * Steps every optimizer and scheduler, unless a gradient on any rank is not finite: then every
   * rank skips the step and a dynamic scale is lowered. Returns whether the step was taken.
   */
  public boolean step() {
    // As in BMTrain, only a loss-scaled run looks for overflow: an unscaled bf16/fp32 run does not
    // pay for the check (one host synchronisation per step).
    boolean overflow = lossScale.enabled() && anyGradientNotFinite();
    if (overflow) {
      skippedSteps++;
      cleanSteps = 0;
      if (lossScale.dynamic()) {
        scale = Math.max(lossScale.min(), scale / lossScale.factor());
      }
      zeroGrad();
      return false;
    }
    for (ShardedOptimizer o : optimizers) {
      o.step(scale);
    }
    for (LrScheduler s : schedulers) {
      if (s != null) {
        s.step();
      }
    }
    if (lossScale.dynamic() && ++cleanSteps >= lossScale.interval()) {
      scale = Math.min(lossScale.max(), scale * lossScale.factor());
      cleanSteps = 0;
    }
    return true;
  }

  /** Whether a gradient on any rank holds inf or NaN: one flag built on the device, one all-reduce, one sync. */
  private boolean anyGradientNotFinite() {
    List<Tensor> grads = shardGradients();
    try (NoGradGuard g = new NoGradGuard()) {
      // On the gradients' device: NCCL reduces device memory only.
      Tensor flag = grads.isEmpty() ? torch.zeros(new long[] {1})
          : torch.zeros(new long[] {1}, new org.bytedeco.pytorch.TensorOptions()
              .device(new org.bytedeco.pytorch.DeviceOptional(grads.get(0).device())));
      for (Tensor t : grads) {
        flag.add_(torch.isfinite(t).all().logical_not());
      }
      communicator().allReduce(flag, ReduceOperation.MAX).await();
      return flag.item().toDouble() > 0;
    }
  }

  /**
   * Everything a resume needs besides the model: the loss scale and counters, each optimizer's
   * and scheduler's state, and the CPU generator (dropout masks continue the same sequence).
   */
  public Map<String, Tensor> stateDict() {
    Map<String, Tensor> out = new LinkedHashMap<>();
    out.put("manager.scale", torch.scalar_tensor(new Scalar(scale), new org.bytedeco.pytorch.TensorOptions().dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Double))));
    out.put("manager.clean_steps", torch.tensor(new long[] {cleanSteps}).reshape(new long[] {}));
    out.put("manager.skipped_steps", torch.tensor(new long[] {skippedSteps}).reshape(new long[] {}));
    out.put("manager.rng", torch.getDefaultCPUGenerator().get_state());
    for (int i = 0; i < optimizers.size(); i++) {
      out.putAll(StateDicts.prefixed(optimizerPrefix(i), optimizers.get(i).stateDict()));
      if (schedulers.get(i) != null) {
        out.putAll(StateDicts.prefixed("scheduler." + i + ".", schedulers.get(i).stateDict()));
      }
    }
    return out;
  }

  /**
   * The keys of {@link #stateDict()} that hold one value per element of a parameter's slice on
   * this rank, each with its parameter: every optimizer's {@link ShardedOptimizer#perElementKeys()},
   * under the same prefix as in the state dict. A sharded checkpoint saves them from every rank
   * and reslices them at another world size.
   */
  public Map<String, ShardedParameter> perElementKeys() {
    Map<String, ShardedParameter> out = new LinkedHashMap<>();
    for (int i = 0; i < optimizers.size(); i++) {
      String prefix = optimizerPrefix(i);
      optimizers.get(i).perElementKeys().forEach((key, parameter) -> out.put(prefix + key, parameter));
    }
    return out;
  }

  /** Where optimizer {@code i}'s entries live in the state dict. */
  private static String optimizerPrefix(int i) {
    return "optimizer." + i + ".";
  }

  public void loadStateDict(Map<String, Tensor> state) {
    scale = StateDicts.require(state, "manager.scale", new long[] {}).item().toDouble();
    cleanSteps = (int) StateDicts.require(state, "manager.clean_steps", new long[] {}).item().toLong();
    skippedSteps = StateDicts.require(state, "manager.skipped_steps", new long[] {}).item().toLong();
    Tensor rng = state.get("manager.rng");
    if (rng == null) {
      throw new IllegalArgumentException("state dict has no entry 'manager.rng': it was not saved by OptimManager.stateDict()");
    }
    torch.getDefaultCPUGenerator().set_state(rng);
    for (int i = 0; i < optimizers.size(); i++) {
      optimizers.get(i).loadStateDict(StateDicts.under(optimizerPrefix(i), state));
      if (schedulers.get(i) != null) {
        schedulers.get(i).loadStateDict(StateDicts.under("scheduler." + i + ".", state));
      }
    }
  }
}
