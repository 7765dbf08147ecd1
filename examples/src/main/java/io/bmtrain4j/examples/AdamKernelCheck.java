package io.bmtrain4j.examples;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.dist.Backend;
import io.bmtrain4j.examples.gpt.DistributedGpt;
import io.bmtrain4j.examples.gpt.DistributedTransformerBlock;
import io.bmtrain4j.examples.gpt.GptConfig;
import io.bmtrain4j.natives.NativeLibraries;
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
 * GPU check of Adam's mixed-precision kernel (run under torchrun, one GPU per rank): two identical
 * bf16 GPTs (fp16 with {@code --dtype fp16}) take the same steps from the same gradients, one
 * with the kernel and one with libtorch's fused AdamW on fp32 copies of the gradients; every
 * master weight and moment must agree. The width (66) and vocabulary (251) give slices whose
 * gradients are not 8-byte aligned, so both the vectorised and the element-wise paths run; its 16
 * layers give more slices than one launch takes (64), so several launches run. The steps use
 * weight decay, and the last two a loss scale of 256. Exits 0 and prints the largest relative
 * difference, or exits 1.
 */
public final class AdamKernelCheck {
  private static final int STEPS = 4;

  private AdamKernelCheck() {}

  public static void main(String[] args) {
    NativeLibraries.load(); // ranks may start together: see NativeLibraries
    torch.ScalarType dtype = args.length == 2 && args[0].equals("--dtype") && args[1].equals("fp16")
        ? torch.ScalarType.Half : torch.ScalarType.BFloat16;
    Bmt.initDistributed(InitOptions.builder().seed(0).backend(Backend.NCCL).build());
    String device = "cuda:" + Bmt.context().localRank();
    GptConfig c = new GptConfig(251, 64, 66, 6, 16, 264, 0.0, dtype).on(device);
    DistributedGpt withKernel = newModel(c);
    DistributedGpt withLibtorch = newModel(c);
    List<ShardedParameter> kernelParams = Bmt.parameters(withKernel);
    List<ShardedParameter> libtorchParams = Bmt.parameters(withLibtorch);
    AdamOptions.Builder options = AdamOptions.builder().lr(1e-2).weightDecay(0.1);
    boolean ok;
    try (AdamOptimizer kernel = new AdamOptimizer(kernelParams, options.mixedPrecisionKernel(true).build());
        AdamOptimizer libtorch = new AdamOptimizer(libtorchParams, options.mixedPrecisionKernel(false).build())) {
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
          }
        }
        kernel.step(scale);
        libtorch.step(scale);
      }
      org.bytedeco.pytorch.global.torch_cuda.getCurrentCUDAStream().synchronize();
      double worst = 0;
      String worstKey = "";
      Map<String, Tensor> want = libtorch.stateDict();
      int compared = 0;
      for (Map.Entry<String, Tensor> e : kernel.stateDict().entrySet()) {
        Tensor w = want.get(e.getKey()).to(torch.ScalarType.Float);
        Tensor got = e.getValue().to(torch.ScalarType.Float);
        double err = got.sub(w).abs().max().item().toDouble() / (w.abs().max().item().toDouble() + 1e-12);
        compared++;
        if (err > worst) {
          worst = err;
          worstKey = e.getKey();
        }
      }
      // Where NVRTC is missing the optimizer falls back to libtorch's kernel: then nothing was checked.
      int onKernel = kernel.slicesOnMixedPrecisionKernel();
      ok = worst < 1e-5 && compared == want.size() && onKernel == kernelParams.size()
          && libtorch.slicesOnMixedPrecisionKernel() == 0;
      Bmt.printRank("Adam kernel check %s (%s gradients, %d steps, weight decay 0.1, loss scale 1 then 256): %d of %d"
          + " slices on the kernel, %d state tensors, largest relative difference to libtorch's fused AdamW %.2e (%s)",
          ok ? "OK" : "FAILED", dtype == torch.ScalarType.Half ? "fp16" : "bf16", STEPS, onKernel, kernelParams.size(),
          compared, worst, worstKey);
    }
    System.out.flush();
    Runtime.getRuntime().halt(ok ? 0 : 1);
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
