package io.bmtrain4j.examples;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.dist.Backend;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.optim.AdamOffloadOptimizer;
import io.bmtrain4j.optim.AdamOptimizer;
import io.bmtrain4j.optim.AdamOptions;
import io.bmtrain4j.zero.ShardedParameter;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.DeviceOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * GPU check of Adam's mixed-precision kernel and of the offloaded Adam (run under torchrun, one
 * GPU per rank): three identical bf16 GPTs (fp16 with {@code --dtype fp16}) take the same steps
 * from the same gradients, one with the kernel, one with libtorch's fused AdamW on fp32 copies of
 * the gradients, and one with {@link AdamOffloadOptimizer} (state on the host, gradients down
 * and rounded parameters up through buffers in the parameters' dtype). Every master weight and
 * moment must agree with the libtorch run's, and the offloaded run's parameter shards with the
 * libtorch run's parameters. The width (66) and vocabulary (251) give slices whose gradients are
 * not 8-byte aligned, so both the vectorised and the element-wise paths run; its 16 layers give
 * more slices than one launch takes (64), so several launches run. The steps use weight decay,
 * and the last two a loss scale of 256. Exits 0 and prints the largest differences, or exits 1.
 */
public final class AdamKernelCheck {
  private static final int STEPS = 4;

  private AdamKernelCheck() {}

  public static void main(String[] args) {
    NativeLibraries.load(); // ranks may start together: see NativeLibraries
    torch.ScalarType dtype = args.length == 2 && args[0].equals("--dtype") && args[1].equals("fp16")
        ? torch.ScalarType.Half : torch.ScalarType.BFloat16;
    String dtypeName = dtype == torch.ScalarType.Half ? "fp16" : "bf16";
    Bmt.initDistributed(InitOptions.builder().seed(0).backend(Backend.NCCL).build());
    String device = "cuda:" + Bmt.context().localRank();
    GptConfig c = new GptConfig(251, 64, 66, 6, 16, 264, 0.0, dtype).on(device);
    List<DistributedGpt> models = List.of(newModel(c), newModel(c), newModel(c));
    List<ShardedParameter> kernelParams = Bmt.parameters(models.get(0));
    List<ShardedParameter> libtorchParams = Bmt.parameters(models.get(1));
    List<ShardedParameter> offloadParams = Bmt.parameters(models.get(2));
    AdamOptions.Builder options = AdamOptions.builder().lr(1e-2).weightDecay(0.1);
    boolean ok;
    try (AdamOptimizer kernel = new AdamOptimizer(kernelParams, options.mixedPrecisionKernel(true).build());
        AdamOptimizer libtorch = new AdamOptimizer(libtorchParams, options.mixedPrecisionKernel(false).build());
        AdamOptimizer offload = new AdamOffloadOptimizer(offloadParams, options.build())) {
      TensorOptions gradOptions = new TensorOptions().dtype(new ScalarTypeOptional(dtype))
          .device(new DeviceOptional(new Device(device)));
      for (int step = 0; step < STEPS; step++) {
        double scale = step < STEPS - 2 ? 1.0 : 256.0;
        try (PointerScope s = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
          torch.manual_seed(100 + step);
          for (int i = 0; i < kernelParams.size(); i++) {
            Tensor grad = torch.randn(new long[] {kernelParams.get(i).localLength()}, gradOptions).mul_(new Scalar(scale));
            kernelParams.get(i).grad().copy_(grad);
            libtorchParams.get(i).grad().copy_(grad);
            offloadParams.get(i).grad().copy_(grad);
          }
        }
        kernel.step(scale);
        libtorch.step(scale);
        offload.step(scale);
      }
      org.bytedeco.pytorch.global.torch_cuda.getCurrentCUDAStream().synchronize();
      Map<String, Tensor> want = libtorch.stateDict();
      Difference onKernel = Difference.of(kernel.stateDict(), want);
      Difference offloaded = Difference.of(offload.stateDict(), want);
      // Where NVRTC is missing the optimizer falls back to libtorch's kernel: then nothing was checked.
      int kernelSlices = kernel.slicesOnMixedPrecisionKernel();
      boolean kernelOk = onKernel.worst() < 1e-5 && onKernel.compared() == want.size() && kernelSlices == kernelParams.size()
          && libtorch.slicesOnMixedPrecisionKernel() == 0;
      Bmt.printRank("Adam kernel check %s (%s gradients, %d steps, weight decay 0.1, loss scale 1 then 256): %d of %d"
          + " slices on the kernel, %d state tensors, largest relative difference to libtorch's fused AdamW %.2e (%s)",
          kernelOk ? "OK" : "FAILED", dtypeName, STEPS, kernelSlices, kernelParams.size(), onKernel.compared(),
          onKernel.worst(), onKernel.worstKey());
      // The parameters: the offloaded run writes its rounded masters into the shards; the others
      // rebuild theirs from the masters at the next gather (readLocal). Masters a few ulps apart may
      // round apart, rarely.
      long elements = 0;
      long differing = 0;
      try (PointerScope s = new PointerScope()) {
        for (int i = 0; i < offloadParams.size(); i++) {
          Tensor got = offloadParams.get(i).readLocal();
          elements += got.numel();
          differing += got.ne(libtorchParams.get(i).readLocal()).sum().item().toLong();
        }
      }
      boolean offloadOk = offloaded.worst() < 1e-5 && offloaded.compared() == want.size() && differing <= elements / 1000;
      Bmt.printRank("Adam offload check %s (%s parameters, state on the host): %d state tensors, largest relative difference"
          + " to libtorch's fused AdamW on the GPU %.2e (%s); %d of %d parameter elements differ from its rounding",
          offloadOk ? "OK" : "FAILED", dtypeName, offloaded.compared(), offloaded.worst(), offloaded.worstKey(), differing,
          elements);
      ok = kernelOk && offloadOk;
    }
    java.lang.ref.Reference.reachabilityFence(models);
    System.out.flush();
    Runtime.getRuntime().halt(ok ? 0 : 1);
  }

  /** The largest of max |got - want| / max |want| over the state tensors both have, and how many were compared. */
  private record Difference(double worst, String worstKey, int compared) {
    static Difference of(Map<String, Tensor> got, Map<String, Tensor> want) {
      double worst = 0;
      String worstKey = "";
      int compared = 0;
      try (PointerScope s = new PointerScope()) {
        for (Map.Entry<String, Tensor> e : got.entrySet()) {
          Tensor w = want.get(e.getKey());
          if (w == null) {
            continue;
          }
          Tensor wf = w.to(torch.ScalarType.Float).cpu();
          Tensor gf = e.getValue().to(torch.ScalarType.Float).cpu();
          double err = gf.sub(wf).abs().max().item().toDouble() / (wf.abs().max().item().toDouble() + 1e-12);
          compared++;
          if (err > worst) {
            worst = err;
            worstKey = e.getKey();
          }
        }
      }
      return new Difference(worst, worstKey, compared);
    }
  }

  private static DistributedGpt newModel(GptConfig c) {
    torch.manual_seed(0);
    DistributedGpt model = new DistributedGpt(c, DistributedTransformerBlock::new);
    // One backward gives every block its shard gradient, which each step then overwrites.
    try (PointerScope s = new PointerScope()) {
      Tensor in = torch.zeros(new long[] {2, 16}, new TensorOptions().dtype(new ScalarTypeOptional(torch.ScalarType.Long))
          .device(new DeviceOptional(new Device(c.device()))));
      model.forward(in).to(torch.ScalarType.Float).sum().backward();
      Bmt.finishBackward(model);
    }
    return model;
  }
}
