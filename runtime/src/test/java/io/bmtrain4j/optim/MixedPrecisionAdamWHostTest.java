package io.bmtrain4j.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.sun.jna.Function;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Pointer;
import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.testing.RanksAsThreads;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The mixed-precision AdamW kernel's arithmetic and its slice table, checked without a GPU: the
 * kernel's source, compiled for the host by the system's C++ compiler with a few lines standing
 * in for CUDA ({@code cuda_on_host.h}), runs the launches {@link MixedPrecisionAdamW#update}
 * makes, arguments and all, over CPU tensors; every master and moment must match libtorch's
 * fused AdamW on fp32 copies of the gradients, as {@code AdamKernelCheck} requires on a GPU.
 *
 * <p>The slices are more than one launch takes (64), of sizes that end mid-block and mid-vector,
 * some 16-byte aligned (the vectorised path) and some not (the element-wise path), with their
 * own step counts, a loss scale and weight decay; for fp16, some gradients are subnormal.
 */
class MixedPrecisionAdamWHostTest {
  private static final int SLICES = 70;
  private static final double LR = 1e-2;
  private static final double BETA1 = 0.9;
  private static final double BETA2 = 0.999;
  private static final double WEIGHT_DECAY = 0.1;
  private static final double EPS = 1e-8;
  private static final double GRAD_SCALE = 256;

  @TempDir static Path build;
  private static Function hostLaunch;

  @BeforeAll
  static void compileForTheHost() throws Exception {
    NativeLibraries.load();
    String compiler = System.getenv().getOrDefault("CXX", "g++");
    Path source = build.resolve("adamw_on_host.cpp");
    Files.writeString(source, resource("cuda_on_host.h") + MixedPrecisionAdamW.source() + resource("cuda_on_host_launch.h"));
    Path library = build.resolve("libadamw_on_host.so");
    Process p;
    try {
      p = new ProcessBuilder(compiler, "-std=c++17", "-O2", "-shared", "-fPIC", "-o", library.toString(), source.toString())
          .redirectErrorStream(true).start();
    } catch (IOException e) {
      String why = "no C++ compiler (" + compiler + ", or $CXX): " + e.getMessage() + ". .ci/run installs g++";
      if (System.getenv("BMTRAIN4J_REQUIRE_REFERENCE") != null) {
        fail(why);
      }
      Assumptions.abort(why);
      return;
    }
    String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "the host compile did not finish");
    assertEquals(0, p.exitValue(), "the kernel's source did not compile for the host:\n" + output);
    hostLaunch = NativeLibrary.getInstance(library.toString()).getFunction("host_launch");
  }

  private static String resource(String name) throws IOException {
    try (InputStream in = MixedPrecisionAdamWHostTest.class.getResourceAsStream(name)) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8) + "\n";
    }
  }

  @ParameterizedTest(name = "{0} gradients")
  @ValueSource(strings = {"bf16", "fp16"})
  void updatesAsLibtorchsFusedAdamW(String dtypeName) {
    torch.ScalarType dtype = dtypeName.equals("bf16") ? torch.ScalarType.BFloat16 : torch.ScalarType.Half;
    try (PointerScope scope = new PointerScope(); MixedPrecisionAdamW kernel = new MixedPrecisionAdamW()) {
      List<Tensor> masters = new ArrayList<>();
      List<Tensor> grads = new ArrayList<>();
      List<Tensor> expAvgs = new ArrayList<>();
      List<Tensor> expAvgSqs = new ArrayList<>();
      List<Tensor> steps = new ArrayList<>();
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(11);
        for (int s = 0; s < SLICES; s++) {
          long n = new long[] {1, 3, 4, 7, 4099, 8192, 8193, 20_001}[s % 8];
          int offset = s % 3 == 2 ? 1 : 0; // a view one element in: neither 16- nor 8-byte aligned
          masters.add(torch.randn(n + offset).narrow(0, offset, n));
          expAvgs.add(torch.randn(n + offset).mul(new Scalar(0.1)).narrow(0, offset, n));
          expAvgSqs.add(torch.rand(n + offset).mul(new Scalar(0.01)).narrow(0, offset, n));
          double size = dtype == torch.ScalarType.Half && s % 5 == 4 ? 1e-5 : 1.0; // fp16's subnormals below 6.1e-5
          grads.add(torch.randn(n + offset).mul(new Scalar(size * GRAD_SCALE)).to(dtype).narrow(0, offset, n));
          steps.add(torch.full(new long[] {}, new Scalar((double) (1 + s % 4)))); // each slice's own count, as PyTorch keeps it
        }
      }
      List<Tensor> wantMasters = clones(masters);
      List<Tensor> wantExpAvgs = clones(expAvgs);
      List<Tensor> wantExpAvgSqs = clones(expAvgSqs);
      List<Tensor> fp32Grads = new ArrayList<>();
      for (Tensor g : grads) {
        fp32Grads.add(g.to(torch.ScalarType.Float).div(new Scalar(GRAD_SCALE)));
      }
      FusedAdamW.step(wantMasters, fp32Grads, wantExpAvgs, wantExpAvgSqs, clones(steps), LR, BETA1, BETA2, WEIGHT_DECAY, EPS);

      List<Long> launches = new ArrayList<>();
      kernel.update((bf16, blocks, threads, arguments) -> {
        assertEquals(dtype == torch.ScalarType.BFloat16, bf16, "the launch's kernel is not the gradients' dtype");
        launches.add(blocks);
        hostLaunch.invokeVoid(new Object[] {bf16 ? 1 : 0, (int) blocks, threads, new Pointer(arguments.kernelParams().address())});
      }, IntStream.range(0, SLICES).boxed().toList(), masters, grads, expAvgs, expAvgSqs, steps, LR, BETA1, BETA2,
          WEIGHT_DECAY, EPS, GRAD_SCALE);

      assertEquals(2, launches.size(), "70 slices make two launches of at most 64");
      double worst = 0;
      for (int s = 0; s < SLICES; s++) {
        worst = Math.max(worst, relativeDifference(masters.get(s), wantMasters.get(s)));
        worst = Math.max(worst, relativeDifference(expAvgs.get(s), wantExpAvgs.get(s)));
        worst = Math.max(worst, relativeDifference(expAvgSqs.get(s), wantExpAvgSqs.get(s)));
      }
      assertTrue(worst < 1e-5, "largest relative difference to libtorch's fused AdamW: " + worst);
    }
  }

  private static List<Tensor> clones(List<Tensor> tensors) {
    return tensors.stream().map(Tensor::clone).toList();
  }

  /** max |got - want| / max |want|, as AdamKernelCheck measures on a GPU. */
  private static double relativeDifference(Tensor got, Tensor want) {
    return got.sub(want).abs().max().item().toDouble() / (want.abs().max().item().toDouble() + 1e-12);
  }
}
