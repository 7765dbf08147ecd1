package io.bmtrain4j;

import java.util.List;
import org.bytedeco.cuda.cudart.cudaDeviceProp;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Context;
import org.bytedeco.pytorch.Dispatcher;
import org.bytedeco.pytorch.IValue;
import org.bytedeco.pytorch.IValueVector;
import org.bytedeco.pytorch.LongVector;
import org.bytedeco.pytorch.OperatorHandle;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * Which kernel libtorch's {@code scaled_dot_product_attention} tries first on a GPU.
 *
 * <p>libtorch 2.10, the build Bytedeco ships, tries FlashAttention-2 first. PyTorch's newer
 * releases put cuDNN's fused attention first on Hopper and Blackwell data-centre GPUs (compute
 * capability 9.0 and 10.0), where it is much faster: on an H100 at head size 128, seq 2048, its
 * forward took 55% and its backward 56% of FlashAttention-2's time (docs/BENCHMARKS.md). {@link
 * Bmt#initDistributed} applies the same rule unless {@link InitOptions.Builder#preferCudnnAttention}
 * turns it off. When cuDNN cannot take a call (a shape or mask it does not support), libtorch falls
 * through the rest of the order as before.
 */
public final class AttentionBackends {
  // at::SDPBackend values (ATen/SDPBackend.h).
  static final long MATH = 0;
  static final long FLASH = 1;
  static final long EFFICIENT = 2;
  static final long CUDNN = 3;
  static final long OVERRIDEABLE = 4;

  /** cuDNN first, then libtorch's own order. */
  static final long[] CUDNN_FIRST = {CUDNN, FLASH, EFFICIENT, MATH, OVERRIDEABLE};

  /** Names of the backends, by value. */
  static final List<String> NAMES = List.of("math", "flash", "efficient", "cudnn", "overrideable");

  private AttentionBackends() {}

  /**
   * The backend libtorch picks for a causal, mask-free {@code scaled_dot_product_attention} of
   * these inputs ({@code aten::_fused_sdp_choice}): "cudnn", "flash", "efficient" or "math". A
   * diagnostic for benchmarks and for users checking what their attention runs on.
   */
  public static String chosenFor(Tensor query, Tensor key, Tensor value, double dropout) {
    try (PointerScope scope = new PointerScope(); IValueVector stack = new IValueVector()) {
      OperatorHandle op = Dispatcher.singleton().findSchemaOrThrow("aten::_fused_sdp_choice", "");
      stack.push_back(new IValue(query));
      stack.push_back(new IValue(key));
      stack.push_back(new IValue(value));
      stack.push_back(new IValue()); // attn_mask: none
      stack.push_back(new IValue(dropout));
      stack.push_back(new IValue(true)); // is_causal
      stack.push_back(new IValue()); // scale: default
      stack.push_back(new IValue(false)); // enable_gqa
      op.callBoxed(stack);
      long chosen = stack.get(0).toInt();
      return chosen >= 0 && chosen < NAMES.size() ? NAMES.get((int) chosen) : "none (" + chosen + ")";
    }
  }

  /** Whether cuDNN attention should lead on a device of this compute capability (PyTorch's rule). */
  static boolean cudnnPreferredOn(int major, int minor) {
    return (major == 9 || major == 10) && minor == 0;
  }

  /**
   * Puts cuDNN attention first if this process's current CUDA device is one where PyTorch prefers
   * it and libtorch has cuDNN; returns whether it did. No-op (false) without CUDA.
   */
  public static boolean preferCudnnWhereFaster() {
    if (!torch.cuda_is_available() || !Context.hasCuDNN()) {
      return false;
    }
    cudaDeviceProp props = torch_cuda.getCurrentDeviceProperties();
    if (!cudnnPreferredOn(props.major(), props.minor())) {
      return false;
    }
    try (LongVector order = new LongVector(CUDNN_FIRST)) {
      torch.globalContext().setSDPPriorityOrder(order);
    }
    return true;
  }
}
