package io.bmtrain4j.dist;

import io.bmtrain4j.internal.Native;
import java.time.Duration;
import java.util.Locale;
import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.global.nccl;
import org.bytedeco.cuda.nccl.ncclComm;
import org.bytedeco.cuda.nccl.ncclUniqueId;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.javacpp.PointerPointer;
import org.bytedeco.pytorch.ByteVector;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.StringVector;
import org.bytedeco.pytorch.Store;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.cuda.CUDAEvent;
import org.bytedeco.pytorch.cuda.CUDAStream;
import org.bytedeco.pytorch.cuda.CUDAStreamGuard;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * GPU collectives through NCCL ({@code org.bytedeco.cuda.global.nccl}), one rank per GPU
 * ({@code LOCAL_RANK}). Rank 0's unique id travels through the rendezvous store.
 *
 * <p>[Note: one communication stream] Every collective runs on one dedicated high-priority stream
 * taken from libtorch's pool, as ProcessGroupNCCL does per communicator: the stream first waits on
 * an event recorded on the caller's current (compute) stream, so the inputs are ready; the
 * collective's own event is then recorded, and {@link NcclWork#await()} makes the consumer's stream
 * wait on it. Nothing in the hot path synchronises the host. One stream keeps a communicator's
 * collectives in issue order on every rank (NCCL requires that order); all-gathers (prefetch) and
 * reduce-scatters (gradients) both overlap the compute stream, not each other. See
 * [Note: buffers held with events] for when a buffer may be freed.
 *
 * <p>[Note: a reduce lane] With {@code separateReduceStream}, reduce-scatters and all-reduces run
 * on a second communicator (split from the first) and a second stream, so a block's gradient
 * reduction and the next block's prefetched all-gather no longer queue behind each other, as
 * FSDP2's separate all-gather and reduce-scatter streams intend. Each communicator still sees its
 * collectives in the same order on every rank, and {@code NCCL_LAUNCH_ORDER_IMPLICIT=1} (unless
 * the user set it) makes NCCL order the two communicators' kernels as the host issued them, the
 * same on every rank, so they cannot wait on each other across ranks. {@link #barrier()} first
 * orders the reduce lane after the all-gathers. The option stays off by default until measured
 * on several GPUs; every rank must be given the same value (checked when joining).
 *
 * <p>A dead or silent peer is reported by {@link NcclWatchdog}, which aborts and ends the process.
 */
public final class NcclCommunicator implements Communicator {
  private final int rank;
  private final int worldSize;
  private final ncclComm comm;
  private final CUDAStream stream;
  /** The reduce lane: {@link #comm} and {@link #stream} themselves unless separate (see [Note: a reduce lane]). */
  private final ncclComm reduceComm;
  private final CUDAStream reduceStream;
  private final NcclWatchdog watchdog;
  private long sequence;

  public NcclCommunicator(Store store, int rank, int worldSize, int localRank, Duration timeout) {
    this(store, rank, worldSize, localRank, timeout, false);
  }

  /** As above; {@code separateReduceStream} gives reductions their own communicator and stream. */
  public NcclCommunicator(Store store, int rank, int worldSize, int localRank, Duration timeout, boolean separateReduceStream) {
    this.rank = rank;
    this.worldSize = worldSize;
    torch_cuda.set_device((byte) localRank);
    ncclUniqueId id = new ncclUniqueId();
    String key = "bmtrain4j/nccl-unique-id";
    if (rank == 0) {
      check(nccl.ncclGetUniqueId(id), "ncclGetUniqueId");
      byte[] bytes = new byte[128];
      id.internal().get(bytes);
      store.set(key, new ByteVector(bytes));
    } else {
      store._wait(new StringVector(key));
      ByteVector v = store.get(key);
      for (int i = 0; i < 128; i++) {
        id.internal(i, v.get(i));
      }
    }
    if (separateReduceStream) {
      // See [Note: a reduce lane]: NCCL (2.26 and later) then orders the two communicators'
      // kernels on the GPU as the host issued them, which every rank does in the same order.
      io.bmtrain4j.internal.NativeEnvironment.setIfAbsent("NCCL_LAUNCH_ORDER_IMPLICIT", "1");
    }
    PointerPointer<ncclComm> out = new PointerPointer<>(1);
    check(nccl.ncclCommInitRank(out, worldSize, id, rank), "ncclCommInitRank");
    this.comm = out.get(ncclComm.class, 0);
    // Owned: initDistributed may run inside a user's PointerScope, which must not free the stream.
    this.stream = Native.own(torch_cuda.getStreamFromPool(true, (byte) localRank));
    if (separateReduceStream) {
      PointerPointer<ncclComm> split = new PointerPointer<>(1);
      int status = nccl.ncclCommSplit(comm, 0, rank, split, (org.bytedeco.cuda.nccl.ncclConfig_t) null);
      if (status != nccl.ncclSuccess) {
        nccl.ncclCommDestroy(comm);
        check(status, "ncclCommSplit (the reduce lane)");
      }
      this.reduceComm = split.get(ncclComm.class, 0);
      this.reduceStream = Native.own(torch_cuda.getStreamFromPool(true, (byte) localRank));
    } else {
      this.reduceComm = comm;
      this.reduceStream = stream;
    }
    this.watchdog = new NcclWatchdog("rank " + rank + " of " + worldSize, localRank, timeout, this::asyncError, () -> {
      nccl.ncclCommAbort(comm);
      if (reduceComm != comm) {
        nccl.ncclCommAbort(reduceComm);
      }
    });
  }

  private String asyncError() {
    String error = asyncError(comm);
    return error != null || reduceComm == comm ? error : asyncError(reduceComm);
  }

  private static String asyncError(ncclComm comm) {
    try (IntPointer result = new IntPointer(1)) {
      result.put(nccl.ncclSuccess);
      int call = nccl.ncclCommGetAsyncError(comm, result);
      int r = call != nccl.ncclSuccess ? call : result.get();
      return r == nccl.ncclSuccess || r == nccl.ncclInProgress ? null : nccl.ncclGetErrorString(r).getString();
    }
  }

  /** The stream the all-gathers (and, unless separate, every collective) run on; checks keep it busy. */
  public CUDAStream communicationStream() {
    return stream;
  }

  /** The stream reduce-scatters and all-reduces run on: {@link #communicationStream()} unless separate. */
  public CUDAStream reductionStream() {
    return reduceStream;
  }

  private void check(int result, String what) {
    if (result != nccl.ncclSuccess) {
      throw new CollectiveException(what + " failed on rank " + rank + " of " + worldSize + " (nccl): "
          + nccl.ncclGetErrorString(result).getString());
    }
  }

  /**
   * Runs {@code collective} on {@code lane} (a communication stream) after the caller's stream has reached this
   * point, then {@code after} (in place, on the same stream), and returns the handle to wait on.
   */
  private synchronized CollectiveHandle enqueue(String what, CUDAStream lane, java.util.function.ToIntFunction<CUstream_st> collective,
      Runnable after) {
    orderAfter(torch_cuda.getCurrentCUDAStream(), lane); // the inputs are ready
    check(collective.applyAsInt(lane.stream()), what);
    if (after != null) {
      try (CUDAStreamGuard onComm = new CUDAStreamGuard(lane.unwrap())) {
        after.run();
      }
    }
    NcclWork work = new NcclWork(what, ++sequence, lane);
    watchdog.track(work);
    return work;
  }

  /** Work queued on {@code later} from now on starts after what {@code earlier} has queued so far (no host wait). */
  private static void orderAfter(CUDAStream earlier, CUDAStream later) {
    try (CUDAEvent reached = new CUDAEvent(0x02)) { // cudaEventDisableTiming
      reached.record(earlier);
      reached.block(later);
    }
  }

  private static int dtype(Tensor t) {
    torch.ScalarType s = t.scalar_type();
    if (s.value == torch.ScalarType.Float.value) {
      return nccl.ncclFloat32;
    } else if (s.value == torch.ScalarType.BFloat16.value) {
      return nccl.ncclBfloat16;
    } else if (s.value == torch.ScalarType.Half.value) {
      return nccl.ncclFloat16;
    } else if (s.value == torch.ScalarType.Double.value) {
      return nccl.ncclFloat64;
    } else if (s.value == torch.ScalarType.Long.value) {
      return nccl.ncclInt64;
    }
    throw new IllegalArgumentException("NCCL collectives of " + s + " tensors are not supported");
  }

  private static int op(ReduceOperation o) {
    switch (o) {
      case SUM:
      case AVG:
        return nccl.ncclSum;
      case MAX:
        return nccl.ncclMax;
      case MIN:
        return nccl.ncclMin;
      default:
        throw new IllegalArgumentException(o.toString().toLowerCase(Locale.ROOT));
    }
  }

  private Runnable average(ReduceOperation o, Tensor result) {
    return o == ReduceOperation.AVG ? () -> result.div_(new Scalar((double) worldSize)) : null;
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
    int type = dtype(input);
    return enqueue("all-gather", stream, st -> nccl.ncclAllGather(input.data_ptr(), output.data_ptr(), input.numel(), type, comm, st), null);
  }

  @Override
  public CollectiveHandle reduceScatter(Tensor output, Tensor input, ReduceOperation o) {
    CollectiveArguments.checkSizes("reduce-scatter", input.numel(), output.numel(), worldSize);
    int type = dtype(input);
    return enqueue("reduce-scatter", reduceStream,
        st -> nccl.ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(), type, op(o), reduceComm, st),
        average(o, output));
  }

  @Override
  public CollectiveHandle allReduce(Tensor tensor, ReduceOperation o) {
    int type = dtype(tensor);
    return enqueue("all-reduce", reduceStream,
        st -> nccl.ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), type, op(o), reduceComm, st),
        average(o, tensor));
  }

  @Override
  public CollectiveHandle broadcast(Tensor tensor, int root) {
    CollectiveArguments.checkPeer("broadcast", root, worldSize);
    int type = dtype(tensor);
    return enqueue("broadcast", stream,
        st -> nccl.ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), type, root, comm, st), null);
  }

  @Override
  public CollectiveHandle send(Tensor tensor, int peer, int tag) {
    CollectiveArguments.checkPeer("send", peer, worldSize);
    int type = dtype(tensor);
    return enqueue("send", stream, st -> nccl.ncclSend(tensor.data_ptr(), tensor.numel(), type, peer, comm, st), null);
  }

  @Override
  public CollectiveHandle recv(Tensor tensor, int peer, int tag) {
    CollectiveArguments.checkPeer("recv", peer, worldSize);
    int type = dtype(tensor);
    return enqueue("recv", stream, st -> nccl.ncclRecv(tensor.data_ptr(), tensor.numel(), type, peer, comm, st), null);
  }

  @Override
  public void barrier() {
    if (reduceStream != stream) { // the barrier's all-reduce also waits for the all-gathers issued before it
      orderAfter(stream, reduceStream);
    }
    Tensor one = torch.ones(new long[] {1}, new org.bytedeco.pytorch.TensorOptions()
        .device(new org.bytedeco.pytorch.DeviceOptional(new org.bytedeco.pytorch.Device("cuda"))));
    allReduce(one, ReduceOperation.SUM).await();
    torch_cuda.getCurrentCUDAStream().synchronize();
    one.close();
  }

  @Override
  public String backendName() {
    return "nccl";
  }

  @Override
  public void close() {
    stream.synchronize();
    reduceStream.synchronize();
    watchdog.close(); // every collective has completed: the watchdog frees their events
    if (reduceComm != comm) {
      nccl.ncclCommDestroy(reduceComm);
      reduceStream.close();
    }
    nccl.ncclCommDestroy(comm);
    stream.close(); // the wrapper only: pool streams live as long as the process
  }
}
