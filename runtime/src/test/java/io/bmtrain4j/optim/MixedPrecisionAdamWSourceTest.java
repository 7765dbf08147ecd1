package io.bmtrain4j.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.sun.jna.Function;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.LongByReference;
import com.sun.jna.ptr.PointerByReference;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The mixed-precision AdamW kernel's source compiles with NVRTC, as {@code CudaKernels} compiles
 * it on a GPU, for the data-centre GPUs users train on (A100, H100/H200, B200), with no headers,
 * and exports every kernel {@link MixedPrecisionAdamW} looks up. NVRTC compiles without a GPU; it
 * comes from pip's {@code nvidia-cuda-nvrtc} in {@code .venv-reference} (which {@code .ci/run}
 * makes) and is called through JNA, since Bytedeco's NVRTC binding needs the CUDA driver. The
 * kernel's arithmetic is checked on the CPU by {@link MixedPrecisionAdamWHostTest} and on a GPU
 * by {@code AdamKernelCheck} (examples).
 */
class MixedPrecisionAdamWSourceTest {
  @ParameterizedTest
  @ValueSource(strings = {"sm_80", "sm_90", "sm_100"})
  void compilesForTheArchitecture(String arch) {
    NativeLibrary nvrtc = nvrtc();
    PointerByReference program = new PointerByReference();
    check(nvrtc, call(nvrtc, "nvrtcCreateProgram", program, MixedPrecisionAdamW.source(), "adamw_mixed_precision.cu", 0, null, null),
        "nvrtcCreateProgram");
    try {
      String[] options = {"--gpu-architecture=" + arch, "--std=c++17"};
      int compiled = call(nvrtc, "nvrtcCompileProgram", program.getValue(), options.length, options);
      String log = log(nvrtc, program.getValue());
      assertEquals(0, compiled, "the kernel source did not compile for " + arch + ":\n" + log);
      assertTrue(log.isBlank(), "NVRTC warned:\n" + log);
      LongByReference size = new LongByReference();
      check(nvrtc, call(nvrtc, "nvrtcGetCUBINSize", program.getValue(), size), "nvrtcGetCUBINSize");
      byte[] cubin = new byte[(int) size.getValue()];
      check(nvrtc, call(nvrtc, "nvrtcGetCUBIN", program.getValue(), cubin), "nvrtcGetCUBIN");
      String symbols = new String(cubin, StandardCharsets.ISO_8859_1);
      for (String kernel : MixedPrecisionAdamW.KERNELS) {
        assertTrue(symbols.contains("\0" + kernel + "\0"), kernel + " is missing from the " + arch + " cubin (extern \"C\"?)");
      }
    } finally {
      call(nvrtc, "nvrtcDestroyProgram", program);
    }
  }

  private static int call(NativeLibrary nvrtc, String name, Object... args) {
    return nvrtc.getFunction(name).invokeInt(args);
  }

  private static void check(NativeLibrary nvrtc, int result, String what) {
    if (result != 0) {
      Function message = nvrtc.getFunction("nvrtcGetErrorString");
      fail(what + " failed: " + message.invokeString(new Object[] {result}, false));
    }
  }

  private static String log(NativeLibrary nvrtc, Pointer program) {
    LongByReference size = new LongByReference();
    call(nvrtc, "nvrtcGetProgramLogSize", program, size);
    byte[] text = new byte[(int) size.getValue()];
    call(nvrtc, "nvrtcGetProgramLog", program, text);
    return new String(text, StandardCharsets.UTF_8).replace("\0", "");
  }

  /**
   * libnvrtc: {@code BMTRAIN4J_NVRTC} (the library's path), else the one pip put into
   * {@code .venv-reference}. Its builtins library is loaded first: NVRTC opens it by name, which
   * finds it only once it is loaded or on the library path.
   */
  private static NativeLibrary nvrtc() {
    String configured = System.getenv("BMTRAIN4J_NVRTC");
    Optional<Path> library = configured != null ? Optional.of(Path.of(configured)) : fromReferenceVenv();
    if (library.isPresent() && Files.isRegularFile(library.get())) {
      try (Stream<Path> files = Files.list(library.get().getParent())) {
        files.filter(f -> f.getFileName().toString().matches("libnvrtc-builtins\\.so\\.[0-9.]+"))
            .forEach(f -> NativeLibrary.getInstance(f.toString()));
      } catch (IOException e) {
        fail(e);
      }
      return NativeLibrary.getInstance(library.get().toString());
    }
    String why = "no NVRTC library (BMTRAIN4J_NVRTC, or pip's nvidia-cuda-nvrtc in .venv-reference: .ci/run installs it)";
    if (System.getenv("BMTRAIN4J_REQUIRE_REFERENCE") != null) {
      fail(why);
    }
    Assumptions.abort(why);
    return null;
  }

  private static Optional<Path> fromReferenceVenv() {
    Path root = Path.of("").toAbsolutePath();
    Path lib = (Files.isDirectory(root.resolve("runtime")) ? root : root.getParent()).resolve(".venv-reference/lib");
    if (!Files.isDirectory(lib)) {
      return Optional.empty();
    }
    try (Stream<Path> pythons = Files.list(lib)) {
      return pythons.map(p -> p.resolve("site-packages/nvidia/cu13/lib/libnvrtc.so.13")).filter(Files::isRegularFile).findFirst();
    } catch (IOException e) {
      return Optional.empty();
    }
  }
}
