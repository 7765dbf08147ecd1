package io.bmtrain4j.optim;

import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedParameter;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * Optimizer state on the parameters' device: an fp32 shard is its own master, masters may
 * rebuild low-precision shards, and each block's gradient is cast to fp32 at most once per part
 * of the step and sliced per parameter (or read as it is by a kernel that converts as it reads).
 */
final class DeviceStatePlacement implements StatePlacement {
  @Override
  public TensorOptions fp32Options(Device parameterDevice) {
    return new TensorOptions().dtype(new ScalarTypeOptional(torch.ScalarType.Float))
        .device(new DeviceOptional(parameterDevice));
  }

  @Override
  public boolean fp32ShardIsItsOwnMaster() {
    return true;
  }

  @Override
  public boolean mastersRebuildShards() {
    return true;
  }

  @Override
  public void reserveGradients(List<ShardedParameter> parameters) {
    // The shard gradients are already here.
  }

  @Override
  public StepGradients gradients(List<ParameterGroup> blocks, double gradScale) {
    return new StepGradients() {
      /** Each block's fp32 gradient, cast when first asked for: an update that reads the stored dtype needs none. */
      private final Map<ParameterGroup, Tensor> fp32Grads = new IdentityHashMap<>();

      @Override
      public List<Tensor> of(List<ShardedParameter> parameters) {
        List<Tensor> out = new ArrayList<>();
        for (ShardedParameter p : parameters) {
          Tensor fp32 = fp32Grads.computeIfAbsent(p.group(), block -> fp32Gradient(block.shardGrad(), gradScale));
          out.add(p.sliceOf(fp32));
        }
        return out;
      }

      @Override
      public List<Tensor> asStored(List<ShardedParameter> parameters) {
        List<Tensor> out = new ArrayList<>();
        for (ShardedParameter p : parameters) {
          out.add(p.sliceOf(p.group().shardGrad()));
        }
        return out;
      }
    };
  }

  /** A block's shard gradient as fp32 with the loss scale removed: a new tensor unless it already is one (scale 1). */
  private static Tensor fp32Gradient(Tensor shardGrad, double gradScale) {
    boolean fp32 = shardGrad.scalar_type().value == torch.ScalarType.Float.value;
    Tensor g = fp32 ? shardGrad : shardGrad.to(torch.ScalarType.Float);
    if (gradScale == 1.0) {
      return g;
    }
    Scalar scale = new Scalar(gradScale);
    return fp32 ? g.div(scale) : g.div_(scale); // never divide the shard gradient itself in place
  }

  @Override
  public void close() {}
}
