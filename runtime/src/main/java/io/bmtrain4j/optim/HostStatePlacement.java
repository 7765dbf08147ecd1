package io.bmtrain4j.optim;

import io.bmtrain4j.internal.Native;
import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedParameter;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * Optimizer state offloaded to host memory, pinned when the parameters are on a GPU: every
 * parameter has a separate fp32 master here (an fp32 shard too), the shards stay resident, and
 * each parameter's gradient is copied into a host buffer of its own before the update.
 *
 * <p>The copies run one hyperparameter group at a time, synchronously; overlapping one group's
 * copies with the next group's update belongs with the GPU runtime (CUDA streams), and is not
 * done yet.
 */
final class HostStatePlacement implements StatePlacement {
  /** Where each parameter's gradient is copied to, fp32, made once. */
  private final Map<ShardedParameter, Tensor> gradientBuffers = new IdentityHashMap<>();

  @Override
  public TensorOptions fp32Options(Device parameterDevice) {
    TensorOptions o = new TensorOptions().dtype(new ScalarTypeOptional(torch.ScalarType.Float))
        .device(new DeviceOptional(new Device("cpu")));
    if (parameterDevice.is_cuda()) {
      o = o.pinned_memory(new BoolOptional(true)); // copies from and to the GPU can then run at full speed
    }
    return o;
  }

  @Override
  public boolean fp32ShardIsItsOwnMaster() {
    return false;
  }

  @Override
  public boolean mastersRebuildShards() {
    return false;
  }

  @Override
  public void reserveGradients(List<ShardedParameter> parameters) {
    try (PointerScope scope = new PointerScope()) {
      for (ShardedParameter p : parameters) {
        gradientBuffers.put(p, Native.own(torch.zeros(new long[] {p.localLength()}, fp32Options(p.group().device()))));
      }
    }
  }

  @Override
  public StepGradients gradients(List<ParameterGroup> blocks, double gradScale) {
    return parameters -> {
      List<Tensor> buffers = new ArrayList<>();
      List<Tensor> onDevice = new ArrayList<>();
      for (ShardedParameter p : parameters) {
        buffers.add(gradientBuffers.get(p));
        onDevice.add(p.sliceOf(p.group().shardGrad()));
      }
      MultiTensorOps.copy(buffers, onDevice); // device -> host, cast to fp32
      if (gradScale != 1.0) {
        MultiTensorOps.divide(buffers, gradScale);
      }
      return buffers;
    };
  }

  @Override
  public void close() {
    Native.closeAll(gradientBuffers.values());
    gradientBuffers.clear();
  }
}
