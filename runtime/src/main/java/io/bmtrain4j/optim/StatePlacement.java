package io.bmtrain4j.optim;

import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedParameter;
import java.util.List;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;

/**
 * Where an optimizer's fp32 state (master weights, moments) lives, chosen once when the
 * optimizer is built: beside the parameters ({@link DeviceStatePlacement}), or in host memory
 * ({@link HostStatePlacement}, offload), where gradients are copied down before the update and
 * rounded masters copied up after it. Everything that differs between the two is asked here,
 * so an optimizer's update is written once.
 */
interface StatePlacement extends AutoCloseable {
  /** Options for fp32 state of parameters that live on {@code parameterDevice}. */
  TensorOptions fp32Options(Device parameterDevice);

  /**
   * Whether an fp32 parameter's shard can be its own master, updated in place: only when the
   * state lives beside it. Otherwise every parameter gets a separate fp32 master here.
   */
  boolean fp32ShardIsItsOwnMaster();

  /**
   * Whether masters here may rebuild a block's shard at each gather (LocalShard's [Note: a
   * shard the optimizer can rebuild]): one cast beside the shard, but a host-to-device copy per
   * gather from the host, so offloaded masters leave the shard resident.
   */
  boolean mastersRebuildShards();

  /** Makes, once, whatever a step needs to bring {@code parameters}' gradients here (offload: host buffers). */
  void reserveGradients(List<ShardedParameter> parameters);

  /**
   * The gradients of one part of a step, over {@code blocks}, brought next to the state: fp32,
   * loss scale removed. Temporaries belong to the caller's {@code PointerScope}.
   */
  StepGradients gradients(List<ParameterGroup> blocks, double gradScale);

  /**
   * Writes the rounding of {@code masters} into {@code shardSlices} (parameter by parameter, in
   * the same order): an update's result reaching the shards the masters do not rebuild.
   */
  default void writeRounded(List<ShardedParameter> parameters, List<Tensor> shardSlices, List<Tensor> masters) {
    MultiTensorOps.copyByDestinationType(shardSlices, masters);
  }

  /** Frees what {@link #reserveGradients} made. */
  @Override
  void close();

  /** One part of a step's gradients, next to the state. */
  interface StepGradients {
    /** The gradients of {@code parameters} (of the part's blocks), in the same order: fp32, loss scale removed. */
    List<Tensor> of(List<ShardedParameter> parameters);

    /**
     * The gradients of {@code parameters} as their shards hold them (the blocks' dtype, loss
     * scale still in), when those already lie beside the state; null when they must be brought
     * here first. For an update kernel that converts as it reads.
     */
    default List<Tensor> asStored(List<ShardedParameter> parameters) {
      return null;
    }
  }
}
