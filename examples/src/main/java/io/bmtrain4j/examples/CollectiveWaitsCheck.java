package io.bmtrain4j.examples;

import io.bmtrain4j.dist.CollectiveHandle;
import io.bmtrain4j.dist.CollectiveWaits;
import io.bmtrain4j.dist.CommContext;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.dist.NcclCommunicator;
import io.bmtrain4j.dist.ReduceOperation;
import io.bmtrain4j.natives.NativeLibraries;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.function.Function;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.javacpp.chrono.Milliseconds;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.TCPStore;
import org.bytedeco.pytorch.TCPStoreOptions;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.cuda.CUDAEvent;
import org.bytedeco.pytorch.cuda.CUDAStream;
import org.bytedeco.pytorch.cuda.CUDAStreamGuard;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * GPU check, on one GPU, of {@link CollectiveWaits} and of the NCCL communicator's reduce lane,
 * with NCCL communicators of one rank whose streams are kept busy with matmuls for a measured
 * time:
 * <ul>
 *   <li>one stream for everything: the all-gather queued behind the busy stream must be measured
 *       as waited about that long, and one on an idle stream as almost nothing;</li>
 *   <li>a separate reduce stream, kept busy: the all-gather must not wait (it has its own
 *       stream), the reduce-scatter must wait about the busy time.</li>
 * </ul>
 * Exits 0 with the figures, or 1.
 */
public final class CollectiveWaitsCheck {
  private static final int MATMULS = 40;

  private CollectiveWaitsCheck() {}

  public static void main(String[] args) throws Exception {
    NativeLibraries.load();
    TCPStore store = store();
    boolean ok = true;
    try (PointerScope scope = new PointerScope()) {
      TensorOptions bf16 = new TensorOptions().dtype(new ScalarTypeOptional(torch.ScalarType.BFloat16))
          .device(new DeviceOptional(new Device("cuda:0")));
      Tensor a = torch.randn(new long[] {8192, 8192}, bf16);
      Tensor in = torch.randn(new long[] {1 << 20}, bf16);
      Tensor out = torch.empty(new long[] {1 << 20}, bf16, new MemoryFormatOptional());
      Function<Communicator, CollectiveHandle> gather = c -> c.allGather(out, in);
      Function<Communicator, CollectiveHandle> reduce = c -> c.reduceScatter(out, in, ReduceOperation.SUM);

      NcclCommunicator one = new NcclCommunicator(store, 0, 1, 0, Duration.ofSeconds(60));
      CommContext oneLane = new CommContext(one);
      busy(one.communicationStream(), a); // warm-up
      double busyMs = busy(one.communicationStream(), a);
      double behind = waited(oneLane, one.communicationStream(), a, gather, "all-gather");
      double idle = waited(oneLane, null, a, gather, "all-gather");
      System.out.printf("one stream, busy %.2f ms: compute waited %.2f ms on the all-gather behind it, %.3f ms with it idle%n",
          busyMs, behind, idle);
      ok &= about(behind, busyMs) && idle < 0.05 * busyMs;
      one.close();

      NcclCommunicator two = new NcclCommunicator(store, 0, 1, 0, Duration.ofSeconds(60), true);
      CommContext twoLanes = new CommContext(two);
      ok &= two.reductionStream().id() != two.communicationStream().id();
      double gatherBesideBusy = waited(twoLanes, two.reductionStream(), a, gather, "all-gather");
      double reduceBehind = waited(twoLanes, two.reductionStream(), a, reduce, "reduce-scatter");
      System.out.printf("separate reduce stream, kept busy %.2f ms: compute waited %.3f ms on an all-gather, %.2f ms on a"
          + " reduce-scatter%n", busyMs, gatherBesideBusy, reduceBehind);
      ok &= gatherBesideBusy < 0.05 * busyMs && about(reduceBehind, busyMs);
      two.close();
    }
    System.out.println(ok ? "collective waits: OK" : "collective waits: FAILED");
    System.exit(ok ? 0 : 1);
  }

  private static boolean about(double measured, double expected) {
    return measured > 0.8 * expected && measured < 1.2 * expected + 1;
  }

  private static TCPStore store() throws java.io.IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    try (TCPStoreOptions opts = new TCPStoreOptions()) {
      opts.port((short) port).isServer(true).waitWorkers(false).timeout(new Milliseconds(30_000));
      return new TCPStore("127.0.0.1", opts);
    }
  }

  /**
   * Keeps {@code busyStream} (if any) busy, issues {@code op} and awaits it on the compute stream;
   * returns how long {@link CollectiveWaits} says compute waited on collectives of {@code kind}.
   */
  private static double waited(CommContext comm, CUDAStream busyStream, Tensor a, Function<Communicator, CollectiveHandle> op,
      String kind) {
    torch_cuda.getCurrentCUDAStream().synchronize();
    comm.collectiveWaits().start();
    if (busyStream != null) {
      enqueueMatmuls(busyStream, a);
    }
    op.apply(comm.dataParallel()).await();
    double ms = comm.collectiveWaits().stop().kind(kind).waitedMillis();
    if (busyStream != null) {
      busyStream.synchronize();
    }
    return ms;
  }

  /** Runs the matmuls on {@code stream} and returns how long they took there. */
  private static double busy(CUDAStream stream, Tensor a) {
    try (CUDAEvent start = new CUDAEvent(0); CUDAEvent end = new CUDAEvent(0)) {
      start.record(stream);
      enqueueMatmuls(stream, a);
      end.record(stream);
      end.synchronize();
      return start.elapsed_time(end);
    }
  }

  /** Queues {@link #MATMULS} matmuls on {@code stream}, without waiting for them. */
  private static void enqueueMatmuls(CUDAStream stream, Tensor a) {
    try (CUDAStreamGuard on = new CUDAStreamGuard(stream.unwrap())) {
      for (int i = 0; i < MATMULS; i++) {
        a.matmul(a);
      }
    }
  }
}
