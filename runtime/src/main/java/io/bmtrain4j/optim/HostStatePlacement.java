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
 * <p>[Note: copies in the shard's dtype] A bf16/fp16 parameter also has a host buffer in its own
 * dtype, through which its gradient comes down and its rounded master goes up; the casts run on
 * the host, between host buffers. libtorch's copy_ between devices and dtypes at once goes through
 * a fresh pageable temporary instead: on an H200 host, 0.8B bf16 gradients took 1,100 to 1,300 ms
 * to reach fp32 host buffers that way, against 30 ms for the same-dtype copy to pinned memory
 * plus 80 to 95 ms for the cast on 16 cores; the way up, 400 ms against 30 + 75
 * ({@code bench/host_copies.py}). AdamOffload's step over those parameters fell from 2,300 to
 * 390 ms (two H200 machines of the same kind, one day).
 *
 * These buffers cost 2 bytes of pinned host memory per parameter, beside the 4 of the fp32
 * gradient buffers and the 12 of the state. They are made on the CPU too, where they buy an
 * extra host copy, so that the CPU tests run the GPU's path.
 *
 * <p>The copies run one part of the step at a time and block until done: a parameter's buffer
 * carries its gradient down, then its rounded master up, in the same step, and the host casts
 * read what the copies wrote. Overlapping one part's copies with the next part's update (CUDA
 * streams, non-blocking copies) would need a buffer per copy in flight and an event before each
 * host cast; it is not done yet.
 */
final class HostStatePlacement implements StatePlacement {
  /** Where each parameter's gradient is copied to, fp32, made once. */
  private final Map<ShardedParameter, Tensor> gradientBuffers = new IdentityHashMap<>();
  /** A bf16/fp16 parameter's buffer in its shard's dtype, made once: see [Note: copies in the shard's dtype]. */
  private final Map<ShardedParameter, Tensor> stagingBuffers = new IdentityHashMap<>();

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
        TensorOptions fp32 = fp32Options(p.group().device());
        gradientBuffers.put(p, Native.own(torch.zeros(new long[] {p.localLength()}, fp32)));
        torch.ScalarType dtype = p.group().dtype();
        if (dtype.value != torch.ScalarType.Float.value) {
          stagingBuffers.put(p, Native.own(torch.zeros(new long[] {p.localLength()}, fp32.dtype(new ScalarTypeOptional(dtype)))));
        }
      }
    }
  }

  @Override
  public StepGradients gradients(List<ParameterGroup> blocks, double gradScale) {
    return parameters -> {
      List<Tensor> buffers = new ArrayList<>();
      List<Tensor> shardGradients = new ArrayList<>();
      for (ShardedParameter p : parameters) {
        buffers.add(gradientBuffers.get(p));
        shardGradients.add(p.sliceOf(p.group().shardGrad()));
      }
      copyThroughStaging(parameters, buffers, shardGradients); // device -> host, then to fp32 on the host
      if (gradScale != 1.0) {
        MultiTensorOps.divide(buffers, gradScale);
      }
      return buffers;
    };
  }

  @Override
  public void writeRounded(List<ShardedParameter> parameters, List<Tensor> shardSlices, List<Tensor> masters) {
    copyThroughStaging(parameters, shardSlices, masters); // rounded on the host, then host -> device
  }

  /**
   * {@code destinations[i].copy_(sources[i])} for each parameter, through its staging buffer where
   * it has one (see [Note: copies in the shard's dtype]): into the buffer, then out of it, each hop
   * crossing either devices or dtypes, never both. Blocking, as the Note requires.
   */
  private void copyThroughStaging(List<ShardedParameter> parameters, List<Tensor> destinations, List<Tensor> sources) {
    List<Tensor> staging = new ArrayList<>();
    List<Tensor> intoStaging = new ArrayList<>();
    List<Tensor> secondHopSources = new ArrayList<>();
    for (int i = 0; i < parameters.size(); i++) {
      Tensor staged = stagingBuffers.get(parameters.get(i));
      if (staged != null) {
        staging.add(staged);
        intoStaging.add(sources.get(i));
      }
      secondHopSources.add(staged != null ? staged : sources.get(i));
    }
    MultiTensorOps.copyByDestinationType(staging, intoStaging);
    MultiTensorOps.copyByDestinationType(destinations, secondHopSources);
  }

  @Override
  public void close() {
    Native.closeAll(gradientBuffers.values());
    Native.closeAll(stagingBuffers.values());
    gradientBuffers.clear();
    stagingBuffers.clear();
  }
}
