package io.bmtrain4j.dist;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * A communicator that reports its collectives to {@link CollectiveWaits} while that is on, and
 * is its delegate unchanged while it is off (the handles are not even wrapped then).
 */
final class MeasuredCommunicator implements Communicator {
  private final Communicator delegate;
  private final CollectiveWaits waits;

  MeasuredCommunicator(Communicator delegate, CollectiveWaits waits) {
    this.delegate = delegate;
    this.waits = waits;
  }

  private CollectiveHandle measured(String kind, Tensor input, CollectiveHandle handle) {
    if (!waits.on()) {
      return handle;
    }
    long bytes = input == null ? 0 : input.numel() * torch.elementSize(input.scalar_type());
    return new Measured(waits.issued(kind, bytes), handle, input != null && input.is_cuda());
  }

  /** A handle whose first {@code await()} is timed; later ones are the delegate's no-ops. */
  private final class Measured implements CollectiveHandle {
    private final CollectiveWaits.Tally tally;
    private final CollectiveHandle inner;
    private final boolean cuda;
    private boolean awaited;

    Measured(CollectiveWaits.Tally tally, CollectiveHandle inner, boolean cuda) {
      this.tally = tally;
      this.inner = inner;
      this.cuda = cuda;
    }

    @Override
    public synchronized void await() {
      if (awaited || !waits.on()) {
        inner.await();
        return;
      }
      awaited = true;
      waits.timeAwait(tally, inner, cuda);
    }

    @Override
    public boolean isCompleted() {
      return inner.isCompleted();
    }
  }

  @Override
  public int rank() {
    return delegate.rank();
  }

  @Override
  public int worldSize() {
    return delegate.worldSize();
  }

  @Override
  public CollectiveHandle allGather(Tensor output, Tensor input) {
    return measured("all-gather", input, delegate.allGather(output, input));
  }

  @Override
  public CollectiveHandle reduceScatter(Tensor output, Tensor input, ReduceOperation op) {
    return measured("reduce-scatter", input, delegate.reduceScatter(output, input, op));
  }

  @Override
  public CollectiveHandle allReduce(Tensor tensor, ReduceOperation op) {
    return measured("all-reduce", tensor, delegate.allReduce(tensor, op));
  }

  @Override
  public CollectiveHandle broadcast(Tensor tensor, int root) {
    return measured("broadcast", tensor, delegate.broadcast(tensor, root));
  }

  @Override
  public CollectiveHandle send(Tensor tensor, int peer, int tag) {
    return measured("send", tensor, delegate.send(tensor, peer, tag));
  }

  @Override
  public CollectiveHandle recv(Tensor tensor, int peer, int tag) {
    return measured("recv", tensor, delegate.recv(tensor, peer, tag));
  }

  @Override
  public void barrier() {
    delegate.barrier();
  }

  @Override
  public String backendName() {
    return delegate.backendName();
  }

  @Override
  public void close() {
    delegate.close();
  }
}
