package io.bmtrain4j.examples;

import io.bmtrain4j.dist.Backend;
import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.dist.ReduceOperation;
import java.time.Duration;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * GPU check of the NCCL watchdog, run under torchrun on 2 GPUs: both ranks all-reduce in a loop;
 * the last rank vanishes after 5 rounds (halt, no goodbye). The survivors must not hang: within
 * the timeout ({@code --timeout-s}, default 10) the watchdog names the collective and the rank and
 * ends the process with status 75. Reaching the end of the loop is a failure (exit 1).
 */
public final class DeadPeerCheck {
  private DeadPeerCheck() {}

  public static void main(String[] args) {
    NativeLibraries.load(); // ranks may start together: see NativeLibraries
    long timeout = args.length > 1 && args[0].equals("--timeout-s") ? Long.parseLong(args[1]) : 10;
    Bmt.initDistributed(InitOptions.builder().seed(0).backend(Backend.NCCL).timeout(Duration.ofSeconds(timeout)).build());
    Communicator comm = Bmt.context().communicator();
    Tensor t = torch.ones(new long[] {1 << 20},
        new TensorOptions().device(new DeviceOptional(new Device("cuda:" + Bmt.context().localRank()))));
    long start = System.nanoTime();
    for (int round = 0; round < 1000; round++) {
      if (round == 5 && comm.rank() == comm.worldSize() - 1) {
        System.out.println("rank " + comm.rank() + " vanishes now");
        System.out.flush();
        Runtime.getRuntime().halt(0);
      }
      comm.allReduce(t, ReduceOperation.AVG).await();
      t.sum().item().toDouble(); // a host sync: where a real training loop would hang
      if (round == 5) {
        start = System.nanoTime();
      }
    }
    System.out.printf("FAILED: rank %d finished 1000 rounds without its peer (%.1f s)%n", comm.rank(),
        (System.nanoTime() - start) / 1e9);
    Runtime.getRuntime().halt(1);
  }
}
