package io.bmtrain4j.examples;

import io.bmtrain4j.dist.CollectiveHandle;
import io.bmtrain4j.dist.CollectiveWaits;
import io.bmtrain4j.dist.CommContext;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.dist.NcclCommunicator;
import io.bmtrain4j.natives.NativeLibraries;
import java.net.ServerSocket;
import java.time.Duration;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.javacpp.chrono.Milliseconds;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.TCPStore;
import org.bytedeco.pytorch.TCPStoreOptions;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.cuda.CUDAEvent;
import org.bytedeco.pytorch.cuda.CUDAStreamGuard;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * GPU check of {@link CollectiveWaits} on one GPU: an NCCL communicator of one rank whose stream
 * is first kept busy with matmuls for a measured time, so the compute stream's wait on the
 * all-gather queued behind them must be measured as about that long; an all-gather on an idle
 * communicator must be measured as almost nothing. Exits 0 with both figures, or 1.
 */
public final class CollectiveWaitsCheck {
  private CollectiveWaitsCheck() {}

  public static void main(String[] args) throws Exception {
    NativeLibraries.load();
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    TCPStore store;
    try (TCPStoreOptions opts = new TCPStoreOptions()) {
      opts.port((short) port).isServer(true).waitWorkers(false).timeout(new Milliseconds(30_000));
      store = new TCPStore("127.0.0.1", opts);
    }
    NcclCommunicator nccl = new NcclCommunicator(store, 0, 1, 0, Duration.ofSeconds(60));
    CommContext comm = new CommContext(nccl);
    Communicator c = comm.dataParallel();
    CollectiveWaits waits = comm.collectiveWaits();
    try (PointerScope scope = new PointerScope()) {
      TensorOptions bf16 = new TensorOptions().dtype(new ScalarTypeOptional(torch.ScalarType.BFloat16))
          .device(new DeviceOptional(new Device("cuda:0")));
      Tensor a = torch.randn(new long[] {8192, 8192}, bf16);
      Tensor in = torch.randn(new long[] {1 << 20}, bf16);
      Tensor out = torch.empty(new long[] {1 << 20}, bf16, new org.bytedeco.pytorch.MemoryFormatOptional());
      int matmuls = 40;
      busy(nccl, a, matmuls); // warm-up
      double busyMs = busy(nccl, a, matmuls);

      waits.start();
      try (CUDAStreamGuard onComm = new CUDAStreamGuard(nccl.communicationStream().unwrap())) {
        for (int i = 0; i < matmuls; i++) {
          a.matmul(a);
        }
      }
      CollectiveHandle queued = c.allGather(out, in);
      queued.await();
      double waitedBehindBusy = waits.stop().kind("all-gather").waitedMillis();

      torch_cuda.getCurrentCUDAStream().synchronize();
      waits.start();
      c.allGather(out, in).await();
      double waitedIdle = waits.stop().kind("all-gather").waitedMillis();

      System.out.printf("comm stream busy %.2f ms; compute waited %.2f ms on the all-gather behind it, %.3f ms on one"
          + " with the stream idle%n", busyMs, waitedBehindBusy, waitedIdle);
      boolean ok = waitedBehindBusy > 0.8 * busyMs && waitedBehindBusy < 1.2 * busyMs + 1 && waitedIdle < 0.05 * busyMs;
      System.out.println(ok ? "collective waits: OK" : "collective waits: FAILED");
      nccl.close();
      System.exit(ok ? 0 : 1);
    }
  }

  /** Runs {@code n} matmuls on the communicator's stream and returns how long they took there. */
  private static double busy(NcclCommunicator nccl, Tensor a, int n) {
    try (CUDAEvent start = new CUDAEvent(0); CUDAEvent end = new CUDAEvent(0);
        CUDAStreamGuard onComm = new CUDAStreamGuard(nccl.communicationStream().unwrap())) {
      start.record(nccl.communicationStream());
      for (int i = 0; i < n; i++) {
        a.matmul(a);
      }
      end.record(nccl.communicationStream());
      end.synchronize();
      return start.elapsed_time(end);
    }
  }
}
