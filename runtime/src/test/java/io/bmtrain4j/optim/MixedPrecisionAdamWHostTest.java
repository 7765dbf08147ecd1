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
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.Test;

/**
 * The mixed-precision AdamW kernel's arithmetic and its slice table, checked without a GPU: the
 * kernel's source, compiled for the host by the system's C++ compiler with a few lines standing
 * in for CUDA ({@code cuda_on_host.h}), runs the launches {@link MixedPrecisionAdamW#update}
 * makes, arguments and all, over CPU tensors; every master and moment must match libtorch's
 * fused AdamW on fp32 copies of the gradients, as {@code AdamKernelCheck} requires on a GPU.
 *
 * <p>One update gets bf16 and fp16 slices mixed, more of each than one launch takes (64), of
 * sizes that end mid-block and mid-vector, and empty ones. Some are 16-byte aligned (the
 * vectorised path), some not at all, and some aligned but for their gradient (the element-wise
 * path for both). They have their own step counts, a loss scale and weight decay. Some fp16
 * gradients are subnormal, beside zero moments, so that a conversion flushing them to zero
 * would change those slices' update entirely.
 */
class MixedPrecisionAdamWHostTest {
  private static final int SLICES = 150;
  private static final long[] SIZES = {1, 3, 4, 7, 0, 4099, 8192, 8193, 20_001};
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

  @Test
  void updatesAsLibtorchsFusedAdamW() {
    try (PointerScope scope = new PointerScope(); MixedPrecisionAdamW kernel = new MixedPrecisionAdamW()) {
      List<Tensor> masters = new ArrayList<>();
      List<Tensor> grads = new ArrayList<>();
      List<Tensor> expAvgs = new ArrayList<>();
      List<Tensor> expAvgSqs = new ArrayList<>();
      List<Tensor> steps = new ArrayList<>();
      Map<Boolean, Long> wantBlocks = new TreeMap<>(); // per dtype (bf16 true), as the launches should add up
      synchronized (RanksAsThreads.RNG_LOCK) {
        torch.manual_seed(11);
        for (int s = 0; s < SLICES; s++) {
          boolean bf16 = s % 2 == 0;
          long n = SIZES[s % SIZES.length];
          long offset = s % 3 == 2 ? 1 : 0; // a view one element in: neither 16- nor 8-byte aligned
          long gradOffset = s % 3 == 1 ? 1 : offset; // and here the gradient alone is off
          boolean subnormal = !bf16 && s % 5 == 3; // stored fp16 values below 6.1e-5, from zero moments
          masters.add(torch.randn(n + offset).narrow(0, offset, n));
          expAvgs.add(subnormal ? torch.zeros(n) : torch.randn(n + offset).mul(new Scalar(0.1)).narrow(0, offset, n));
          expAvgSqs.add(subnormal ? torch.zeros(n) : torch.rand(n + offset).mul(new Scalar(0.01)).narrow(0, offset, n));
          Tensor stored = torch.randn(n + gradOffset).mul(new Scalar(subnormal ? 2e-5 : GRAD_SCALE));
          grads.add(stored.to(bf16 ? torch.ScalarType.BFloat16 : torch.ScalarType.Half).narrow(0, gradOffset, n));
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

      Map<Boolean, List<Long>> launches = new TreeMap<>();
      kernel.update((bf16, blocks, threads, arguments) -> {
        launches.computeIfAbsent(bf16, b -> new ArrayList<>()).add(blocks);
        hostLaunch.invokeVoid(new Object[] {bf16 ? 1 : 0, (int) blocks, threads, new Pointer(arguments.kernelParams().address())});
      }, IntStream.range(0, SLICES).boxed().toList(), masters, grads, expAvgs, expAvgSqs, steps, LR, BETA1, BETA2,
          WEIGHT_DECAY, EPS, GRAD_SCALE);

      // 75 slices per dtype, 8 or 9 of them empty: more than 64 to update, in two launches each.
      for (boolean bf16 : List.of(true, false)) {
        long blocks = 0;
        for (int s = bf16 ? 0 : 1; s < SLICES; s += 2) {
          blocks += (SIZES[s % SIZES.length] + 8191) / 8192;
        }
        assertEquals(2, launches.get(bf16).size(), (bf16 ? "bf16" : "fp16") + " launches");
        assertEquals(blocks, launches.get(bf16).stream().mapToLong(Long::longValue).sum(), "blocks of 8,192 elements");
      }
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

  /** max |got - want| / max |want|, as AdamKernelCheck measures on a GPU (0 for an empty slice). */
  private static double relativeDifference(Tensor got, Tensor want) {
    if (want.numel() == 0) {
      return 0;
    }
    return got.sub(want).abs().max().item().toDouble() / (want.abs().max().item().toDouble() + 1e-12);
  }
}
