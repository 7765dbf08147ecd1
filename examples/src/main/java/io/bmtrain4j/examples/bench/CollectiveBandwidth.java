package io.bmtrain4j.examples.bench;

import io.bmtrain4j.dist.Backend;
import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.dist.CollectiveHandle;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.dist.ReduceOperation;
import java.util.concurrent.Callable;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch_cuda;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Bus bandwidth of bmtrain4j's all-gather and reduce-scatter (bf16, through the runtime's
 * {@link Communicator}, events and stream included) across sizes, as BMTrain's benchmark module and
 * nccl-tests report it: busbw = bytes / time * (n - 1) / n, where bytes is the whole (gathered or
 * scattered) buffer. {@code bench/nccl_bandwidth.py} measures PyTorch's NCCL process group the same way.
 */
@Command(name = "collective-bandwidth", mixinStandardHelpOptions = true, description = "NCCL bus bandwidth.")
public final class CollectiveBandwidth implements Callable<Integer> {
  @Option(names = "--min-mib", description = "smallest buffer (default ${DEFAULT-VALUE})")
  int minMib = 1;

  @Option(names = "--max-mib", description = "largest buffer (default ${DEFAULT-VALUE})")
  int maxMib = 1024;

  @Option(names = "--iterations", description = "timed iterations per size (default ${DEFAULT-VALUE})")
  int iterations = 20;

  public static void main(String[] args) {
    NativeLibraries.load(); // ranks may start together: see NativeLibraries
    System.exit(new CommandLine(new CollectiveBandwidth()).execute(args));
  }

  @Override
  public Integer call() {
    Bmt.initDistributed(InitOptions.builder().seed(0).backend(Backend.NCCL).build());
    Communicator comm = Bmt.context().communicator();
    int world = comm.worldSize();
    TensorOptions bf16 = new TensorOptions().dtype(new ScalarTypeOptional(torch.ScalarType.BFloat16))
        .device(new DeviceOptional(new Device("cuda:" + Bmt.context().localRank())));
    Bmt.printRank("%10s %16s %16s   (bf16, %d GPUs, GB/s bus bandwidth)", "size", "all-gather", "reduce-scatter", world);
    for (long mib = minMib; mib <= maxMib; mib *= 4) {
      try (PointerScope scope = new PointerScope()) {
        long whole = mib * 1024 * 1024 / 2 / world * world;
        Tensor full = torch.ones(new long[] {whole}, bf16);
        Tensor part = torch.ones(new long[] {whole / world}, bf16);
        double ag = time(() -> comm.allGather(full, part));
        double rs = time(() -> comm.reduceScatter(part, full, ReduceOperation.SUM));
        double factor = whole * 2.0 * (world - 1) / world / 1e9;
        Bmt.printRank("%7d MiB %16.1f %16.1f", mib, factor / ag, factor / rs);
      }
    }
    return 0;
  }

  private double time(java.util.function.Supplier<CollectiveHandle> collective) {
    for (int i = 0; i < 5; i++) {
      collective.get().await();
    }
    torch_cuda.getCurrentCUDAStream().synchronize();
    Bmt.synchronize();
    long start = System.nanoTime();
    for (int i = 0; i < iterations; i++) {
      collective.get().await();
    }
    torch_cuda.getCurrentCUDAStream().synchronize();
    return (System.nanoTime() - start) / 1e9 / iterations;
  }
}
