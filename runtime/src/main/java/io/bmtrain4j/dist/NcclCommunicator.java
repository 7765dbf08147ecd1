package io.bmtrain4j.dist;

import java.util.Locale;
import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.global.nccl;
import org.bytedeco.cuda.nccl.ncclComm;
import org.bytedeco.cuda.nccl.ncclUniqueId;
import org.bytedeco.javacpp.PointerPointer;
import org.bytedeco.pytorch.ByteVector;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.StringVector;
import org.bytedeco.pytorch.Store;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * GPU collectives through NCCL ({@code org.bytedeco.cuda.global.nccl}), one rank per GPU
 * ({@code LOCAL_RANK}). Rank 0's unique id travels through the rendezvous store.
 *
 * <p>First version: every collective is enqueued on the current CUDA stream, so it is ordered with
 * the compute around it without any host synchronisation, and its handle is complete at once (a
 * later kernel on the stream waits for it). A dedicated communication stream with events, which
 * lets all-gathers overlap compute, is the next step (issue 7). A dead peer is not detected yet:
 * NCCL hangs unless a watchdog aborts the communicator.
 */
public final class NcclCommunicator implements Communicator {
  private final int rank;
  private final int worldSize;
  private final ncclComm comm;

  public NcclCommunicator(Store store, int rank, int worldSize, int localRank) {
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
    PointerPointer<ncclComm> out = new PointerPointer<>(1);
    check(nccl.ncclCommInitRank(out, worldSize, id, rank), "ncclCommInitRank");
    this.comm = out.get(ncclComm.class, 0);
  }

  private void check(int result, String what) {
    if (result != nccl.ncclSuccess) {
      throw new CollectiveException(what + " failed on rank " + rank + " of " + worldSize + " (nccl): "
          + nccl.ncclGetErrorString(result).getString());
    }
  }

  private static CUstream_st stream() {
    return torch_cuda.getCurrentCUDAStream().stream();
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

  private CollectiveHandle done(ReduceOperation o, Tensor result) {
    if (o == ReduceOperation.AVG) {
      result.div_(new Scalar((double) worldSize));
    }
    return CollectiveHandle.completed();
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
    Collectives.checkSizes("all-gather", output.numel(), input.numel(), worldSize);
    check(nccl.ncclAllGather(input.data_ptr(), output.data_ptr(), input.numel(), dtype(input), comm, stream()), "all-gather");
    return CollectiveHandle.completed();
  }

  @Override
  public CollectiveHandle reduceScatter(Tensor output, Tensor input, ReduceOperation o) {
    Collectives.checkSizes("reduce-scatter", input.numel(), output.numel(), worldSize);
    check(nccl.ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(), dtype(input), op(o), comm, stream()),
        "reduce-scatter");
    return done(o, output);
  }

  @Override
  public CollectiveHandle allReduce(Tensor tensor, ReduceOperation o) {
    check(nccl.ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), dtype(tensor), op(o), comm, stream()),
        "all-reduce");
    return done(o, tensor);
  }

  @Override
  public CollectiveHandle broadcast(Tensor tensor, int root) {
    Collectives.checkPeer("broadcast", root, worldSize);
    check(nccl.ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(), dtype(tensor), root, comm, stream()),
        "broadcast");
    return CollectiveHandle.completed();
  }

  @Override
  public CollectiveHandle send(Tensor tensor, int peer, int tag) {
    Collectives.checkPeer("send", peer, worldSize);
    check(nccl.ncclSend(tensor.data_ptr(), tensor.numel(), dtype(tensor), peer, comm, stream()), "send");
    return CollectiveHandle.completed();
  }

  @Override
  public CollectiveHandle recv(Tensor tensor, int peer, int tag) {
    Collectives.checkPeer("recv", peer, worldSize);
    check(nccl.ncclRecv(tensor.data_ptr(), tensor.numel(), dtype(tensor), peer, comm, stream()), "recv");
    return CollectiveHandle.completed();
  }

  @Override
  public void barrier() {
    Tensor one = torch.ones(new long[] {1}, new org.bytedeco.pytorch.TensorOptions()
        .device(new org.bytedeco.pytorch.DeviceOptional(new org.bytedeco.pytorch.Device("cuda"))));
    allReduce(one, ReduceOperation.SUM);
    torch_cuda.getCurrentCUDAStream().synchronize();
    one.close();
  }

  @Override
  public String backendName() {
    return "nccl";
  }

  @Override
  public void close() {
    nccl.ncclCommDestroy(comm);
  }
}
