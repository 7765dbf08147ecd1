package io.bmtrain4j.dist;

import java.time.Duration;
import java.util.List;
import io.bmtrain4j.internal.Native;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.chrono.Milliseconds;
import org.bytedeco.pytorch.AllreduceOptions;
import org.bytedeco.pytorch.BroadcastOptions;
import org.bytedeco.pytorch.ProcessGroupGloo;
import org.bytedeco.pytorch.ReduceOp;
import org.bytedeco.pytorch.ReduceScatterOptions;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Store;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.Work;

/**
 * CPU collectives through libtorch's {@code ProcessGroupGloo}. Gloo runs each collective on its
 * own worker threads, so a returned handle really is in flight while the caller computes.
 *
 * <p>A peer process that exits makes the next collective fail at once ("Connection closed by
 * peer"); a peer that is alive but silent fails it after {@code timeout}.
 */
public final class GlooCommunicator implements Communicator {
  private final ProcessGroupGloo group;
  private final ProcessGroupGloo.Options options;
  private final int rank;
  private final int worldSize;
  private final Duration timeout;
  /** Handles not yet awaited: {@link #close()} finishes them before the group goes (see there). */
  private final java.util.Set<GlooHandle> unfinished = java.util.concurrent.ConcurrentHashMap.newKeySet();

  public GlooCommunicator(Store store, int rank, int worldSize, String hostname, Duration timeout) {
    this.rank = rank;
    this.worldSize = worldSize;
    this.timeout = timeout;
    this.options = new ProcessGroupGloo.Options(new Milliseconds(timeout.toMillis()));
    options.devices().push_back(ProcessGroupGloo.createDeviceForHostname(hostname));
    // Two threads: one collective may run while the next is queued (prefetch + reduce-scatter).
    options.threads(2);
    try {
      this.group = new ProcessGroupGloo(store, rank, worldSize, options);
    } catch (RuntimeException e) {
      throw new CollectiveException(
          "rank " + rank + " of " + worldSize + " could not connect its Gloo process group within "
              + timeout.toSeconds() + " s: " + firstLine(e), e);
    }
  }

  @Override
  public int rank() {
    return rank;
  }

  @Override
  public int worldSize() {
    return worldSize;
  }

  @Override
  public CollectiveHandle allGather(Tensor output, Tensor input) {
    CollectiveArguments.checkSizes("all-gather", output.numel(), input.numel(), worldSize);
    // Gloo compares each rank's chunk with the input's shape: hand it flat views.
    Tensor out = Native.own(output.view(-1));
    Tensor in = Native.own(input.view(-1));
    return start("all-gather", () -> group._allgather_base(out, in), List.of(output, input), List.of(out, in), null);
  }

  @Override
  public CollectiveHandle reduceScatter(Tensor output, Tensor input, ReduceOperation op) {
    CollectiveArguments.checkSizes("reduce-scatter", input.numel(), output.numel(), worldSize);
    Tensor out = Native.own(output.view(-1));
    Tensor in = Native.own(input.view(-1));
    ReduceScatterOptions opts = Native.own(new ReduceScatterOptions()).reduceOp(nativeOp(op));
    return start("reduce-scatter", () -> group._reduce_scatter_base(out, in, opts),
        List.of(output, input), List.of(out, in, opts), averageIfNeeded(op, output));
  }

  @Override
  public CollectiveHandle allReduce(Tensor tensor, ReduceOperation op) {
    TensorVector tensors = Native.own(new TensorVector(tensor));
    AllreduceOptions opts = Native.own(new AllreduceOptions()).reduceOp(nativeOp(op));
    return start("all-reduce", () -> group.allreduce(tensors, opts), List.of(tensor), List.of(tensors, opts),
        averageIfNeeded(op, tensor));
  }

  @Override
  public CollectiveHandle broadcast(Tensor tensor, int root) {
    CollectiveArguments.checkPeer("broadcast", root, worldSize);
    TensorVector tensors = Native.own(new TensorVector(tensor));
    BroadcastOptions opts = Native.own(new BroadcastOptions()).rootRank(root);
    return start("broadcast from rank " + root, () -> group.broadcast(tensors, opts), List.of(tensor),
        List.of(tensors, opts), null);
  }

  @Override
  public CollectiveHandle send(Tensor tensor, int peer, int tag) {
    CollectiveArguments.checkPeer("send", peer, worldSize);
    TensorVector tensors = Native.own(new TensorVector(tensor));
    return start("send to rank " + peer, () -> group.send(tensors, peer, tag), List.of(tensor), List.of(tensors), null);
  }

  @Override
  public CollectiveHandle recv(Tensor tensor, int peer, int tag) {
    CollectiveArguments.checkPeer("recv", peer, worldSize);
    TensorVector tensors = Native.own(new TensorVector(tensor));
    return start("recv from rank " + peer, () -> group.recv(tensors, peer, tag), List.of(tensor), List.of(tensors), null);
  }

  @Override
  public void barrier() {
    start("barrier", group::barrier, List.of(), List.of(), null).await();
  }

  @Override
  public String backendName() {
    return "gloo";
  }

  @Override
  public void close() {
    // A Work freed after its process group corrupts the native heap (its destructor reaches into
    // the group): finish every collective nobody awaited while the group still exists.
    for (GlooHandle h : List.copyOf(unfinished)) {
      h.finishQuietly();
    }
    group.close();
    options.close();
  }

  private Runnable averageIfNeeded(ReduceOperation op, Tensor result) {
    if (op != ReduceOperation.AVG) {
      return null;
    }
    return () -> result.div_(new Scalar((double) worldSize));
  }

  private static ReduceOp nativeOp(ReduceOperation op) {
    switch (op) {
      case SUM:
      case AVG: // Gloo has no AVG: SUM, then divide on completion.
        return new ReduceOp(ReduceOp.RedOpType.SUM);
      case MAX:
        return new ReduceOp(ReduceOp.RedOpType.MAX);
      case MIN:
        return new ReduceOp(ReduceOp.RedOpType.MIN);
      default:
        throw new IllegalArgumentException("unsupported reduction " + op);
    }
  }

  private interface Launch {
    Work run();
  }

  /**
   * Launches a collective. {@code callerTensors} are kept reachable until it completes;
   * {@code owned} (views, vectors, options made here) are closed then.
   */
  private CollectiveHandle start(String what, Launch launch, List<Tensor> callerTensors, List<Pointer> owned,
      Runnable onDone) {
    try {
      GlooHandle h = new GlooHandle(what, Native.own(launch.run()), callerTensors, owned, onDone);
      unfinished.add(h);
      return h;
    } catch (RuntimeException e) {
      Native.closeAll(owned);
      throw failure(what, e);
    }
  }

  private CollectiveException failure(String what, RuntimeException e) {
    String cause = firstLine(e);
    String lower = cause.toLowerCase(java.util.Locale.ROOT);
    boolean peerTrouble = lower.contains("connection") || lower.contains("closed") || lower.contains("timed out")
        || lower.contains("timeout") || lower.contains("peer");
    return new CollectiveException(
        what + " failed on rank " + rank + " of " + worldSize + " (gloo, timeout "
            + timeout.toSeconds() + " s): " + cause
            + (peerTrouble ? ". A peer rank died or stopped answering; check the other ranks' output." : ""), e);
  }

  static String firstLine(Throwable e) {
    String m = String.valueOf(e.getMessage());
    int nl = m.indexOf('\n');
    return nl < 0 ? m : m.substring(0, nl);
  }

  /** Holds the tensors and options of a collective until it has completed. */
  private final class GlooHandle implements CollectiveHandle {
    private final String what;
    private Work work;
    private List<Tensor> callerTensors;
    private List<Pointer> owned;
    private Runnable onDone;
    private RuntimeException failure;

    GlooHandle(String what, Work work, List<Tensor> callerTensors, List<Pointer> owned, Runnable onDone) {
      this.what = what;
      this.work = work;
      this.callerTensors = callerTensors;
      this.owned = owned;
      this.onDone = onDone;
    }

    @Override
    public synchronized void await() {
      if (failure != null) {
        throw failure;
      }
      if (work == null) {
        return;
      }
      try {
        work._wait();
      } catch (RuntimeException e) {
        failure = failure(what, e);
        release();
        throw failure;
      }
      try {
        if (onDone != null) {
          onDone.run();
        }
      } finally {
        release(); // even if the averaging threw: a Work must not outlive the group (see close)
      }
    }

    @Override
    public synchronized boolean isCompleted() {
      return work == null || work.isCompleted();
    }

    /** Waits for the collective if it is still unfinished, swallowing its failure (the communicator is closing). */
    synchronized void finishQuietly() {
      try {
        await();
      } catch (RuntimeException e) {
        // already reported to whoever awaited it, or nobody wants it: the job is ending
      }
    }

    private void release() {
      unfinished.remove(this);
      work.close();
      work = null;
      Native.closeAll(owned);
      owned = null;
      callerTensors = null;
      onDone = null;
    }
  }
}
