package io.bmtrain4j.dist;

import org.bytedeco.pytorch.Tensor;

/**
 * The communicator of a world of one process: every collective is the identity (a copy where
 * output and input differ), exactly what any backend computes at world size 1.
 */
public final class LocalCommunicator implements Communicator {
  @Override
  public int rank() {
    return 0;
  }

  @Override
  public int worldSize() {
    return 1;
  }

  @Override
  public CollectiveHandle allGather(Tensor output, Tensor input) {
    CollectiveArguments.checkSizes("all-gather", output.numel(), input.numel(), 1);
    output.copy_(input.view(output.sizes()));
    return CollectiveHandle.completed();
  }

  @Override
  public CollectiveHandle reduceScatter(Tensor output, Tensor input, ReduceOperation op) {
    CollectiveArguments.checkSizes("reduce-scatter", input.numel(), output.numel(), 1);
    output.copy_(input.view(output.sizes()));
    return CollectiveHandle.completed();
  }

  @Override
  public CollectiveHandle allReduce(Tensor tensor, ReduceOperation op) {
    return CollectiveHandle.completed();
  }

  @Override
  public CollectiveHandle broadcast(Tensor tensor, int root) {
    CollectiveArguments.checkPeer("broadcast", root, 1);
    return CollectiveHandle.completed();
  }

  @Override
  public CollectiveHandle send(Tensor tensor, int peer, int tag) {
    throw new IllegalArgumentException("send to rank " + peer + ": a world of one process has no peer");
  }

  @Override
  public CollectiveHandle recv(Tensor tensor, int peer, int tag) {
    throw new IllegalArgumentException("recv from rank " + peer + ": a world of one process has no peer");
  }

  @Override
  public void barrier() {}

  @Override
  public String backendName() {
    return "local";
  }

  @Override
  public void close() {}
}
