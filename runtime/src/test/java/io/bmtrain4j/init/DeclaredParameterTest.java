package io.bmtrain4j.init;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.natives.NativeLibraries;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

/** A parameter declared for a dtype and device holds one element, whatever its shape, until its shard exists. */
class DeclaredParameterTest {
  @Test
  void aDeclaredParameterHasItsShapeButNoStorage() {
    NativeLibraries.load();
    try (PointerScope scope = new PointerScope()) {
      // 128256 x 4096 bf16 would be 1 GiB: Llama 3 8B's embedding.
      Tensor t = Bmt.parameter(Initializer.normal(0.02), torch.ScalarType.BFloat16, new Device("cpu"), 128_256, 4096);
      assertArrayEquals(new long[] {128_256, 4096}, t.sizes().vec().get());
      assertEquals(128_256L * 4096, t.numel());
      assertEquals(torch.ScalarType.BFloat16.value, t.scalar_type().value);
      assertTrue(t.requires_grad());
      assertEquals(2, t.storage().nbytes(), "one bf16 element behind the whole shape");
      assertTrue(DeferredParameters.take(t) != null, "registered for initParameters");
    }
  }
}
