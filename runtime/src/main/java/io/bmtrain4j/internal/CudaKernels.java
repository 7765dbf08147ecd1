package io.bmtrain4j.internal;

import static org.bytedeco.cuda.global.cudart.cudaDevAttrComputeCapabilityMajor;
import static org.bytedeco.cuda.global.cudart.cudaDevAttrComputeCapabilityMinor;
import static org.bytedeco.cuda.global.cudart.cudaDeviceGetAttribute;
import static org.bytedeco.cuda.global.cudart.cudaGetDevice;
import static org.bytedeco.cuda.global.cudart.cudaGetErrorString;
import static org.bytedeco.cuda.global.cudart.cuGetErrorString;
import static org.bytedeco.cuda.global.cudart.cuLaunchKernel;
import static org.bytedeco.cuda.global.cudart.cuModuleGetFunction;
import static org.bytedeco.cuda.global.cudart.cuModuleLoadData;
import static org.bytedeco.cuda.global.cudart.cudaSetDevice;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.bytedeco.cuda.cudart.CUfunc_st;
import org.bytedeco.cuda.cudart.CUmod_st;
import org.bytedeco.cuda.global.nvrtc;
import org.bytedeco.cuda.nvrtc._nvrtcProgram;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.PointerPointer;
import org.bytedeco.javacpp.SizeTPointer;
import org.bytedeco.pytorch.cuda.CUDAStream;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * CUDA C++ compiled at run time by NVRTC for the GPU at hand and loaded as a CUDA library: for
 * the few kernels libtorch lacks (the optimizer's mixed-precision update). The source travels in
 * the jar, so the build needs no nvcc and the code is compiled for exactly the device's
 * architecture; each source is compiled once per process and device, and its module stays loaded
 * in the device's primary context (libtorch's) for the process's life, as libtorch's own kernels
 * do.
 *
 * <p>The source must include no headers (NVRTC would need the CUDA toolkit's include directory,
 * which a runtime-only install lacks) and declare its kernels {@code extern "C"}.
 */
public final class CudaKernels {
  private static final Map<String, CudaKernels> COMPILED = new ConcurrentHashMap<>();

  private final String name;
  private final int device;
  private final CUmod_st module;

  private CudaKernels(String name, int device, CUmod_st module) {
    this.name = name;
    this.device = device;
    this.module = module;
  }

  /**
   * {@code source}, compiled for GPU {@code device}'s architecture and loaded there (once: later
   * calls with the same name and device return the first module).
   *
   * @throws IllegalStateException when NVRTC is missing or the source does not compile or load
   */
  public static CudaKernels compile(String name, String source, int device) {
    return COMPILED.computeIfAbsent(name + "@" + device, key -> {
      try (OnDevice on = new OnDevice(device)) {
        String arch = "sm_" + attribute(cudaDevAttrComputeCapabilityMajor, device) + attribute(cudaDevAttrComputeCapabilityMinor, device);
        return new CudaKernels(name, device, load(name, nvrtcCompile(name, source, arch)));
      }
    });
  }

  /**
   * Makes this module's device the thread's current CUDA device, and so its primary context
   * (libtorch's) current for launches, until closed: then the thread's previous device is back.
   * Launch this module's kernels inside one.
   */
  public OnDevice onDevice() {
    return new OnDevice(device);
  }

  /** A thread's current CUDA device, set for a while (see {@link #onDevice()}). */
  public static final class OnDevice implements AutoCloseable {
    private final int previous;
    private final int device;

    private OnDevice(int device) {
      int[] current = new int[1];
      check(cudaGetDevice(current), "cudaGetDevice");
      this.previous = current[0];
      this.device = device;
      check(cudaSetDevice(device), "cudaSetDevice"); // also makes the device's primary context current
    }

    @Override
    public void close() {
      if (previous != device) {
        check(cudaSetDevice(previous), "cudaSetDevice");
      }
    }
  }

  /** The {@code extern "C"} kernel {@code symbol} of this module. */
  public Kernel kernel(String symbol) {
    CUfunc_st function = Native.own(new CUfunc_st()); // cached by callers: no caller's PointerScope may reset it
    checkDriver(cuModuleGetFunction(function, module, symbol), name + ": kernel " + symbol);
    return new Kernel(name + "." + symbol, function, (byte) device);
  }

  /** One kernel: launched with {@link Arguments} on libtorch's current stream of its module's device. */
  public static final class Kernel {
    private final String name;
    private final CUfunc_st handle;
    private final byte device;

    private Kernel(String name, CUfunc_st handle, byte device) {
      this.name = name;
      this.handle = handle;
      this.device = device;
    }

    /**
     * Queues the kernel on libtorch's current stream of its device: {@code blocks} of
     * {@code threads}, one dimension. Call it inside its module's {@link #onDevice()}.
     */
    public void launch(long blocks, int threads, Arguments arguments) {
      if (blocks < 1 || blocks > Integer.MAX_VALUE || threads < 1) {
        throw new IllegalArgumentException(name + ": grid of " + blocks + " blocks of " + threads + " threads");
      }
      try (CUDAStream stream = torch_cuda.getCurrentCUDAStream(device)) {
        checkDriver(cuLaunchKernel(handle, (int) blocks, 1, 1, threads, 1, 1, 0, stream.stream(), arguments.kernelParams(),
            (PointerPointer<?>) null), name + ": launch");
      }
    }
  }

  /**
   * A kernel's arguments, in order, each in native memory of its own, owned here rather than by
   * any caller's PointerScope: an 8-byte slot (a double, or a float in the slot's low bytes), or
   * a larger one for a struct passed by value. Reused from launch to launch: the launch copies
   * the values.
   */
  public static final class Arguments implements AutoCloseable {
    private final BytePointer[] slots;
    // void*[]: each slot's address, as cuLaunchKernel takes them. (A LongPointer holding the same
    // addresses, passed as a plain Pointer, was refused with "invalid argument" on an H200.)
    private final PointerPointer<BytePointer> addresses;

    /** One argument per size, in bytes: 8 for a scalar, a struct's {@code sizeof} for a struct by value. */
    public Arguments(long... bytes) {
      slots = new BytePointer[bytes.length];
      for (int i = 0; i < bytes.length; i++) {
        slots[i] = Native.own(new BytePointer(Math.max(8, bytes[i])));
        slots[i].fill(0);
      }
      addresses = Native.own(new PointerPointer<>(slots));
    }

    /** Argument {@code i}: a {@code double}. */
    public Arguments float64(int i, double value) {
      slots[i].putDouble(0, value);
      return this;
    }

    /** Argument {@code i}: a {@code float}. */
    public Arguments float32(int i, float value) {
      slots[i].putFloat(0, value);
      return this;
    }

    /** The arguments as cuLaunchKernel takes them: {@code void*[]}, one address per argument's bytes. */
    public PointerPointer<BytePointer> kernelParams() {
      return addresses;
    }

    /** Argument {@code i}'s bytes, for a struct the caller writes field by field at the offsets the kernel's source fixes. */
    public BytePointer struct(int i) {
      return slots[i];
    }

    @Override
    public void close() {
      addresses.close();
      Native.closeAll(java.util.List.of(slots));
    }
  }

  private static byte[] nvrtcCompile(String name, String source, String arch) {
    _nvrtcProgram program = new _nvrtcProgram();
    try (BytePointer src = new BytePointer(source); BytePointer file = new BytePointer(name + ".cu")) {
      checkNvrtc(nvrtc.nvrtcCreateProgram(program, src, file, 0, (PointerPointer<?>) null, (PointerPointer<?>) null),
          name + ": nvrtcCreateProgram");
    } catch (UnsatisfiedLinkError | NoClassDefFoundError e) {
      throw new IllegalStateException("NVRTC (libnvrtc.so, CUDA's run-time compiler) could not be loaded: " + e.getMessage()
          + ". Install it beside the CUDA runtime (pip's nvidia-cuda-nvrtc, or the CUDA toolkit).", e);
    }
    try (PointerPointer<BytePointer> options = new PointerPointer<>("--gpu-architecture=" + arch, "--std=c++17")) {
      int compiled = nvrtc.nvrtcCompileProgram(program, 2, options);
      if (compiled != nvrtc.NVRTC_SUCCESS) {
        throw new IllegalStateException(name + " did not compile for " + arch + ": "
            + nvrtc.nvrtcGetErrorString(compiled).getString() + "\n" + log(program));
      }
      try (SizeTPointer size = new SizeTPointer(1)) {
        checkNvrtc(nvrtc.nvrtcGetCUBINSize(program, size), name + ": nvrtcGetCUBINSize");
        byte[] cubin = new byte[(int) size.get()];
        checkNvrtc(nvrtc.nvrtcGetCUBIN(program, cubin), name + ": nvrtcGetCUBIN");
        return cubin;
      }
    } finally {
      nvrtc.nvrtcDestroyProgram(program);
    }
  }

  private static String log(_nvrtcProgram program) {
    try (SizeTPointer size = new SizeTPointer(1)) {
      nvrtc.nvrtcGetProgramLogSize(program, size);
      byte[] text = new byte[(int) size.get()];
      nvrtc.nvrtcGetProgramLog(program, text);
      return new String(text, 0, Math.max(0, text.length - 1), java.nio.charset.StandardCharsets.UTF_8);
    }
  }

  private static CUmod_st load(String name, byte[] cubin) {
    CUmod_st module = Native.own(new CUmod_st()); // cached for the process: no caller's PointerScope may reset it
    try (BytePointer code = new BytePointer(cubin)) {
      checkDriver(cuModuleLoadData(module, code), name + ": cuModuleLoadData");
    }
    return module;
  }

  private static int attribute(int attribute, int device) {
    int[] value = new int[1];
    check(cudaDeviceGetAttribute(value, attribute, device), "cudaDeviceGetAttribute");
    return value[0];
  }

  private static void check(int result, String what) {
    if (result != 0) {
      throw new IllegalStateException(what + " failed: " + cudaGetErrorString(result).getString());
    }
  }

  private static void checkDriver(int result, String what) {
    if (result != 0) {
      try (PointerPointer<BytePointer> message = new PointerPointer<>(1)) {
        cuGetErrorString(result, message);
        BytePointer text = message.get(BytePointer.class, 0);
        throw new IllegalStateException(what + " failed: CUDA driver error " + result + (text == null ? "" : " (" + text.getString() + ")"));
      }
    }
  }

  private static void checkNvrtc(int result, String what) {
    if (result != nvrtc.NVRTC_SUCCESS) {
      throw new IllegalStateException(what + " failed: " + nvrtc.nvrtcGetErrorString(result).getString());
    }
  }
}
