package io.bmtrain4j.dist;

import org.bytedeco.pytorch.Tensor;

/**
 * The collectives the runtime needs, over flat contiguous tensors, each returning a handle that
 * completes asynchronously (FSDP2's {@code _fsdp_collectives}: small stateless functions).
 *
 * <p>Implementations: {@link GlooCommunicator} (CPU, libtorch's ProcessGroupGloo) and
 * {@link LocalCommunicator} (world size 1). An NCCL implementation keeps the same contract: a
 * handle's {@link CollectiveHandle#await()} orders the caller after the collective (on a GPU: the
 * compute stream waits on the collective's event, without a host synchronisation).
 *
 * <p>Every rank must issue the same collectives in the same order. A collective that cannot
 * complete within the communicator's timeout, or whose peer died, fails with a
 * {@link CollectiveException} naming the collective and the rank.
 */
public interface Communicator extends AutoCloseable {
  int rank();

  int worldSize();

  /** Gathers every rank's {@code input} into {@code output} (numel = worldSize * input numel), in rank order. */
  CollectiveHandle allGather(Tensor output, Tensor input);

  /** Reduces {@code input} (numel = worldSize * output numel) across ranks; rank r keeps slice r in {@code output}. */
  CollectiveHandle reduceScatter(Tensor output, Tensor input, ReduceOperation op);

  /** Reduces {@code tensor} across ranks in place. */
  CollectiveHandle allReduce(Tensor tensor, ReduceOperation op);

  /** Copies {@code root}'s {@code tensor} into every rank's {@code tensor}. */
  CollectiveHandle broadcast(Tensor tensor, int root);

  CollectiveHandle send(Tensor tensor, int peer, int tag);

  CollectiveHandle recv(Tensor tensor, int peer, int tag);

  /** Returns once every rank has reached the barrier. */
  void barrier();

  /** A short name for messages and reports: "gloo", "local", "nccl". */
  String backendName();

  @Override
  void close();
}
