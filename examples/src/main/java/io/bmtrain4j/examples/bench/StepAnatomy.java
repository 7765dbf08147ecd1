package io.bmtrain4j.examples.bench;

import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.DeviceMemory;
import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.Gpt;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.examples.gpt.TransformerBlock;
import java.util.List;
import java.util.concurrent.Callable;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * Where a training step's time goes, without the optimizer, on one device: the example GPT as a
 * plain libtorch model (every activation kept, no sharding) or as the sharded model on a world of
 * one (per-block recompute through the runtime). {@code bench/step_anatomy.py} times the same GPT
 * in PyTorch the same way (plain, and with {@code torch.utils.checkpoint} per block), so the two
 * together separate the kernels' speed (plain against plain) from the cost of our checkpointing
 * (sharded against checkpointed). Forward (with the loss) and backward are timed with a device
 * synchronisation after each.
 */
@Command(name = "step-anatomy", mixinStandardHelpOptions = true,
    description = "Forward and backward times of the example GPT, plain or sharded, on one device.")
public final class StepAnatomy implements Callable<Integer> {
  @Mixin GptWorkload workload = new GptWorkload();

  @Option(names = "--mode", description = "plain (a libtorch model) or sharded (world of one, recompute) (default ${DEFAULT-VALUE})")
  String mode = "plain";

  @Option(names = "--layers", description = "blocks, overriding the preset's (0: the preset's) (default ${DEFAULT-VALUE})")
  int layers;

  @Option(names = "--steps", description = "timed steps (default ${DEFAULT-VALUE})")
  int steps = 8;

  @Option(names = "--warmup", description = "untimed steps first (default ${DEFAULT-VALUE})")
  int warmup = 3;

  public static void main(String[] args) {
    NativeLibraries.load(); // ranks may start together: see NativeLibraries
    System.exit(new CommandLine(new StepAnatomy()).execute(args));
  }

  @Override
  public Integer call() {
    boolean gpu = workload.onGpu();
    if (!mode.equals("plain") && !mode.equals("sharded")) {
      throw new CommandLine.ParameterException(new CommandLine(this), "--mode must be plain or sharded, not " + mode);
    }
    workload.initDistributed();
    if (Bmt.worldSize() != 1) {
      throw new IllegalStateException("step-anatomy times one device: run it with one rank, not " + Bmt.worldSize());
    }
    String device = gpu ? "cuda:0" : "cpu";
    GptConfig preset = GptConfig.preset(workload.model, workload.vocab, workload.seq, 0.0, torch.ScalarType.BFloat16);
    GptConfig c = new GptConfig(workload.vocab, workload.seq, preset.dModel(), preset.heads(), layers > 0 ? layers : preset.layers(),
        preset.dFf(), 0.0, torch.ScalarType.BFloat16, device);
    // The sharded model is a Gpt too; only dropping the gradients after backward differs.
    Gpt gpt;
    Runnable dropGradients;
    if (mode.equals("plain")) {
      Gpt plain = new Gpt(c, TransformerBlock::new);
      gpt = plain;
      dropGradients = () -> plain.visitParameters(p -> p.mutable_grad().put(new Tensor()));
    } else {
      DistributedGpt sharded = new DistributedGpt(c, DistributedTransformerBlock::new);
      List<ShardedParameter> parameters = Bmt.parameters(sharded);
      gpt = sharded;
      dropGradients = () -> {
        Bmt.finishBackward(sharded);
        parameters.forEach(ShardedParameter::zeroBlockGradients);
      };
    }
    TensorOptions longs = new TensorOptions().dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Long))
        .device(new DeviceOptional(new Device(device)));
    long forwardNanos = 0;
    long backwardNanos = 0;
    for (int i = 0; i < warmup + steps; i++) {
      if (i == warmup && gpu) {
        DeviceMemory.resetPeak();
      }
      try (PointerScope step = new PointerScope()) {
        Tensor tokens = torch.randint(workload.vocab, new long[] {workload.microBatch, workload.seq + 1}, longs);
        long t0 = workload.synchronizedNanos();
        Tensor logits16 = gpt.forward(tokens.narrow(1, 0, workload.seq));
        Tensor logits = logits16.to(torch.ScalarType.Float);
        logits16.close(); // as Python drops it: autograd keeps what it needs
        Tensor loss = torch.cross_entropy_loss(logits.reshape(-1, workload.vocab), tokens.narrow(1, 1, workload.seq).reshape(-1));
        long t1 = workload.synchronizedNanos();
        loss.backward();
        dropGradients.run();
        long t2 = workload.synchronizedNanos();
        if (i >= warmup) {
          forwardNanos += t1 - t0;
          backwardNanos += t2 - t1;
        }
      }
    }
    double fwd = forwardNanos / 1e6 / steps;
    double bwd = backwardNanos / 1e6 / steps;
    Bmt.printRank("ANATOMY impl=bmtrain4j mode=%s model=%s layers=%d micro_batch=%d attention=%s forward_ms=%.1f"
        + " backward_ms=%.1f step_ms=%.1f peak_allocated_gib=%.2f", mode, workload.model, c.layers(), workload.microBatch,
        TransformerBlock.attentionBackend(c, workload.microBatch, workload.seq), fwd, bwd, fwd + bwd,
        gpu ? DeviceMemory.current().peakAllocatedBytes() / 1073741824.0 : 0.0);
    return 0;
  }
}
