package io.bmtrain4j.optim;

import io.bmtrain4j.internal.CudaKernels;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * bmtrain4j's own AdamW kernel for bf16/fp16 parameters on a GPU ({@code adamw_mixed_precision.cu},
 * compiled by NVRTC for each GPU on first use): it updates the fp32 masters and moments from the
 * 2-byte shard gradients as they are, with the loss scale removed on the fly. libtorch's fused
 * AdamW would need every gradient cast to fp32 first, a copy written and read again; BMTrain's and
 * apex's mixed-precision Adam kernels skip it the same way. One launch per parameter slice, on the
 * slice's own GPU and its current stream, as libtorch's kernels run.
 *
 * <p>Where NVRTC is missing or the kernel does not compile, {@link #handles} says so once in the
 * log and answers false from then on: the optimizer keeps libtorch's fused kernel.
 */
final class MixedPrecisionAdamW implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MixedPrecisionAdamW.class);
  private static final String SOURCE_NAME = "adamw_mixed_precision";
  /** The source's kernels: element-wise and four at a time, for bf16 and for fp16 gradients. */
  static final List<String> KERNELS = List.of("adamw_bf16", "adamw_bf16_vec4", "adamw_fp16", "adamw_fp16_vec4");
  private static final int THREADS = 256;
  /** Resident blocks per multiprocessor a grid-stride launch aims for (2048 threads each on Hopper). */
  private static final int BLOCKS_PER_MULTIPROCESSOR = 8;
  /** Set at the first failure to compile or load: the cause (NVRTC missing, mostly) holds for the process. */
  private static volatile boolean unavailable;

  /** The compiled kernels of one GPU. */
  private record DeviceKernels(CudaKernels library, CudaKernels.Kernel bf16, CudaKernels.Kernel bf16Vec4,
      CudaKernels.Kernel fp16, CudaKernels.Kernel fp16Vec4) {
    static DeviceKernels compile(int device) {
      CudaKernels library = CudaKernels.compile(SOURCE_NAME, source(), device);
      return new DeviceKernels(library, library.kernel(KERNELS.get(0)), library.kernel(KERNELS.get(1)),
          library.kernel(KERNELS.get(2)), library.kernel(KERNELS.get(3)));
    }
  }

  private final Map<Integer, DeviceKernels> byDevice = new HashMap<>();
  private final CudaKernels.Arguments arguments = new CudaKernels.Arguments(12);

  /**
   * Whether this kernel updates {@code master} (fp32, on a GPU) from {@code gradient} (bf16 or
   * fp16, beside it): the first such call for a GPU compiles the kernel there.
   */
  boolean handles(Tensor master, Tensor gradient) {
    int g = gradient.scalar_type().value;
    boolean fits = master.is_cuda() && gradient.is_cuda() && master.scalar_type().value == torch.ScalarType.Float.value
        && (g == torch.ScalarType.BFloat16.value || g == torch.ScalarType.Half.value)
        && master.is_contiguous() && gradient.is_contiguous() && master.numel() == gradient.numel();
    if (!fits) {
      return false;
    }
    int device = deviceOf(master);
    return device == deviceOf(gradient) && kernelsOn(device) != null;
  }

  private static int deviceOf(Tensor t) {
    try (Device d = t.device()) {
      return d.index();
    }
  }

  /** The kernels compiled for GPU {@code device}, or null (logged once) where they cannot be. */
  private DeviceKernels kernelsOn(int device) {
    DeviceKernels kernels = byDevice.get(device);
    if (kernels == null && !unavailable) {
      try {
        kernels = DeviceKernels.compile(device);
        byDevice.put(device, kernels);
      } catch (IllegalStateException | UnsatisfiedLinkError | NoClassDefFoundError e) {
        unavailable = true;
        LOG.warn("bmtrain4j's mixed-precision AdamW kernel is unavailable, so Adam casts bf16/fp16 gradients to fp32"
            + " for libtorch's fused AdamW (about a third more memory traffic per step): {}", e.getMessage());
      }
    }
    return kernels;
  }

  /**
   * One AdamW step for each slice (lists in the same order, each accepted by {@link #handles}):
   * masters and moments in place, the gradients divided by {@code gradScale}. The caller has
   * already incremented {@code steps} (PyTorch's order).
   */
  void step(List<Tensor> masters, List<Tensor> gradients, List<Tensor> expAvgs, List<Tensor> expAvgSqs,
      List<Tensor> steps, double lr, double beta1, double beta2, double weightDecay, double eps, double gradScale) {
    arguments.float64(6, lr).float64(7, beta1).float64(8, beta2).float64(9, eps).float64(10, weightDecay)
        .float32(11, (float) gradScale);
    // The slices by GPU (one, mostly), so that each GPU is made current once, not per launch.
    Map<Integer, List<Integer>> slicesByDevice = new TreeMap<>();
    for (int i = 0; i < masters.size(); i++) {
      if (masters.get(i).numel() > 0) {
        slicesByDevice.computeIfAbsent(deviceOf(masters.get(i)), d -> new ArrayList<>()).add(i);
      }
    }
    slicesByDevice.forEach((device, slices) -> {
      DeviceKernels kernels = byDevice.get(device);
      try (CudaKernels.OnDevice on = kernels.library().onDevice()) {
        for (int i : slices) {
          launch(kernels, masters.get(i), gradients.get(i), expAvgs.get(i), expAvgSqs.get(i), steps.get(i));
        }
      }
    });
  }

  /** One slice's update, the hyperparameters already in {@link #arguments}; inside its GPU's {@code onDevice()}. */
  private void launch(DeviceKernels kernels, Tensor p, Tensor g, Tensor m, Tensor v, Tensor step) {
    long n = p.numel();
    long pAddress = p.data_ptr().address();
    long gAddress = g.data_ptr().address();
    long mAddress = m.data_ptr().address();
    long vAddress = v.data_ptr().address();
    boolean vec4 = (pAddress | mAddress | vAddress) % 16 == 0 && gAddress % 8 == 0;
    boolean isBf16 = g.scalar_type().value == torch.ScalarType.BFloat16.value;
    CudaKernels.Kernel kernel = isBf16 ? (vec4 ? kernels.bf16Vec4() : kernels.bf16()) : (vec4 ? kernels.fp16Vec4() : kernels.fp16());
    long perThread = vec4 ? 4 : 1;
    long maxBlocks = (long) kernels.library().multiprocessors() * BLOCKS_PER_MULTIPROCESSOR;
    long blocks = Math.min(maxBlocks, Math.max(1, (n + perThread * THREADS - 1) / (perThread * THREADS)));
    arguments.int64(0, pAddress).int64(1, gAddress).int64(2, mAddress).int64(3, vAddress).pointer(4, step).int64(5, n);
    kernel.launch(blocks, THREADS, arguments);
  }

  /** The kernels' CUDA C++ source, from the jar. */
  static String source() {
    try (InputStream in = MixedPrecisionAdamW.class.getResourceAsStream(SOURCE_NAME + ".cu")) {
      if (in == null) {
        throw new IllegalStateException(SOURCE_NAME + ".cu is missing from the runtime jar");
      }
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public void close() {
    arguments.close();
  }
}
