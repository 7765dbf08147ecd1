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
import org.bytedeco.javacpp.BytePointer;
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
 * apex's mixed-precision Adam kernels skip it the same way. One launch updates up to {@link
 * #MAX_SLICES} slices of one GPU and gradient dtype (PyTorch's multi_tensor_apply does the same),
 * on that GPU's current stream, as libtorch's kernels run: with a launch per slice, the 1.3B
 * GPT's optimizer phase took 13.3 to 14.2 ms on H200s, and 12.4 ms with these launches.
 *
 * <p>Where NVRTC is missing or the kernel does not compile, {@link #handles} says so once in the
 * log and answers false from then on: the optimizer keeps libtorch's fused kernel.
 */
final class MixedPrecisionAdamW implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MixedPrecisionAdamW.class);
  private static final String SOURCE_NAME = "adamw_mixed_precision";
  /** The source's kernels, for bf16 and for fp16 gradients. */
  static final List<String> KERNELS = List.of("adamw_bf16", "adamw_fp16");
  private static final int THREADS = 256;
  /**
   * Elements one block updates (8 float4s per thread on the vectorised path, 32 elements one by
   * one otherwise): a 16M-element slice takes 2,048 blocks.
   */
  private static final long ELEMENTS_PER_BLOCK = 8L * 4 * THREADS;

  // The kernel's first argument, struct Slices, byte by byte: source() prepends them to the kernel's
  // source as #defines, so that this is the layout's one definition.
  /** Slices per launch: the struct stays within CUDA's 4 KiB of kernel parameters. */
  static final int MAX_SLICES = 64;
  private static final int OFFSET_P = 0;
  private static final int OFFSET_G = 8 * MAX_SLICES;
  private static final int OFFSET_M = 16 * MAX_SLICES;
  private static final int OFFSET_V = 24 * MAX_SLICES;
  private static final int OFFSET_STEP = 32 * MAX_SLICES;
  private static final int OFFSET_N = 40 * MAX_SLICES;
  private static final int OFFSET_FIRST_BLOCK = 48 * MAX_SLICES;
  private static final int OFFSET_COUNT = OFFSET_FIRST_BLOCK + 4 * (MAX_SLICES + 1);
  private static final int SLICES_BYTES = (OFFSET_COUNT + 4 + 7) / 8 * 8; // aligned to its 8-byte members

  /** Set at the first failure to compile or load: the cause (NVRTC missing, mostly) holds for the process. */
  private static volatile boolean unavailable;

  /** The compiled kernels of one GPU. */
  private record DeviceKernels(CudaKernels library, CudaKernels.Kernel bf16, CudaKernels.Kernel fp16) {
    static DeviceKernels compile(int device) {
      CudaKernels library = CudaKernels.compile(SOURCE_NAME, source(), device);
      return new DeviceKernels(library, library.kernel(KERNELS.get(0)), library.kernel(KERNELS.get(1)));
    }

    void launch(boolean bf16Gradients, long blocks, int threads, CudaKernels.Arguments arguments) {
      (bf16Gradients ? bf16 : fp16).launch(blocks, threads, arguments);
    }
  }

  /**
   * Where one launch goes: {@code adamw_bf16} or {@code adamw_fp16} over {@code blocks} of
   * {@code threads}, with {@code arguments} as cuLaunchKernel takes them. A GPU's compiled
   * kernels, or in tests the same source compiled for the host.
   */
  @FunctionalInterface
  interface LaunchTarget {
    void launch(boolean bf16Gradients, long blocks, int threads, CudaKernels.Arguments arguments);
  }

  private final Map<Integer, DeviceKernels> byDevice = new HashMap<>();
  /** struct Slices, then lr, beta1, beta2, eps, weight_decay (double) and grad_scale (float). */
  private final CudaKernels.Arguments arguments = new CudaKernels.Arguments(SLICES_BYTES, 8, 8, 8, 8, 8, 8);

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
    // The slices by GPU (one, mostly), so that each GPU is made current once.
    Map<Integer, List<Integer>> slicesByDevice = new TreeMap<>();
    for (int i = 0; i < masters.size(); i++) {
      slicesByDevice.computeIfAbsent(deviceOf(masters.get(i)), d -> new ArrayList<>()).add(i);
    }
    slicesByDevice.forEach((device, slices) -> {
      DeviceKernels kernels = byDevice.get(device);
      try (CudaKernels.OnDevice on = kernels.library().onDevice()) {
        update(kernels::launch, slices, masters, gradients, expAvgs, expAvgSqs, steps, lr, beta1, beta2, weightDecay, eps,
            gradScale);
      }
    });
  }

  /**
   * {@link #step}'s launches for {@code slices} (indices into the lists, all on one device), sent
   * to {@code target}: one launch per {@link #MAX_SLICES} non-empty slices of one gradient dtype.
   */
  void update(LaunchTarget target, List<Integer> slices, List<Tensor> masters, List<Tensor> gradients,
      List<Tensor> expAvgs, List<Tensor> expAvgSqs, List<Tensor> steps, double lr, double beta1, double beta2,
      double weightDecay, double eps, double gradScale) {
    arguments.float64(1, lr).float64(2, beta1).float64(3, beta2).float64(4, eps).float64(5, weightDecay)
        .float32(6, (float) gradScale);
    Map<Boolean, List<Integer>> byType = new TreeMap<>();
    for (int i : slices) {
      if (masters.get(i).numel() > 0) {
        boolean bf16 = gradients.get(i).scalar_type().value == torch.ScalarType.BFloat16.value;
        byType.computeIfAbsent(bf16, b -> new ArrayList<>()).add(i);
      }
    }
    byType.forEach((bf16, ofType) -> {
      for (int from = 0; from < ofType.size(); from += MAX_SLICES) {
        long blocks = writeSliceTable(ofType.subList(from, Math.min(ofType.size(), from + MAX_SLICES)), masters, gradients,
            expAvgs, expAvgSqs, steps);
        target.launch(bf16, blocks, THREADS, arguments);
      }
    });
  }

  /**
   * Writes the kernel's slice table (its first argument) for {@code slices} (indices into the
   * lists; at most {@link #MAX_SLICES}) and returns the blocks the launch needs.
   */
  private long writeSliceTable(List<Integer> slices, List<Tensor> masters, List<Tensor> gradients, List<Tensor> expAvgs,
      List<Tensor> expAvgSqs, List<Tensor> steps) {
    BytePointer struct = arguments.struct(0);
    long blocks = 0;
    for (int s = 0; s < slices.size(); s++) {
      int i = slices.get(s);
      long n = masters.get(i).numel();
      struct.putLong(OFFSET_P + 8L * s, masters.get(i).data_ptr().address());
      struct.putLong(OFFSET_G + 8L * s, gradients.get(i).data_ptr().address());
      struct.putLong(OFFSET_M + 8L * s, expAvgs.get(i).data_ptr().address());
      struct.putLong(OFFSET_V + 8L * s, expAvgSqs.get(i).data_ptr().address());
      struct.putLong(OFFSET_STEP + 8L * s, steps.get(i).data_ptr().address());
      struct.putLong(OFFSET_N + 8L * s, n);
      struct.putInt(OFFSET_FIRST_BLOCK + 4L * s, (int) blocks);
      blocks += (n + ELEMENTS_PER_BLOCK - 1) / ELEMENTS_PER_BLOCK;
    }
    if (blocks > Integer.MAX_VALUE) {
      throw new IllegalStateException("an AdamW launch over " + blocks + " blocks exceeds CUDA's grid: slices too large");
    }
    struct.putInt(OFFSET_FIRST_BLOCK + 4L * slices.size(), (int) blocks);
    struct.putInt(OFFSET_COUNT, slices.size());
    return blocks;
  }

  /** The kernels' CUDA C++ source, from the jar. */
  static String source() {
    try (InputStream in = MixedPrecisionAdamW.class.getResourceAsStream(SOURCE_NAME + ".cu")) {
      if (in == null) {
        throw new IllegalStateException(SOURCE_NAME + ".cu is missing from the runtime jar");
      }
      String layout = String.join("\n", "#define MAX_SLICES " + MAX_SLICES, "#define SLICES_OFFSET_P " + OFFSET_P,
          "#define SLICES_OFFSET_G " + OFFSET_G,
          "#define SLICES_OFFSET_M " + OFFSET_M, "#define SLICES_OFFSET_V " + OFFSET_V,
          "#define SLICES_OFFSET_STEP " + OFFSET_STEP, "#define SLICES_OFFSET_N " + OFFSET_N,
          "#define SLICES_OFFSET_FIRST_BLOCK " + OFFSET_FIRST_BLOCK, "#define SLICES_OFFSET_COUNT " + OFFSET_COUNT,
          "#define SLICES_BYTES " + SLICES_BYTES, "");
      return layout + new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public void close() {
    arguments.close();
  }
}
