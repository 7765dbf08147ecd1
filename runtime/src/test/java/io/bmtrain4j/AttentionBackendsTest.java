package io.bmtrain4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import java.util.Arrays;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

class AttentionBackendsTest {
  @Test
  void cudnnLeadsOnlyOnHopperAndBlackwellDataCentreParts() {
    assertTrue(AttentionBackends.cudnnPreferredOn(9, 0)); // H100, H200
    assertTrue(AttentionBackends.cudnnPreferredOn(10, 0)); // B200
    assertFalse(AttentionBackends.cudnnPreferredOn(8, 0)); // A100
    assertFalse(AttentionBackends.cudnnPreferredOn(8, 9)); // L40
    assertFalse(AttentionBackends.cudnnPreferredOn(12, 0)); // consumer Blackwell
    assertFalse(AttentionBackends.cudnnPreferredOn(10, 3));
  }

  @Test
  void theOrderNamesEveryBackendOnceWithCudnnFirst() {
    long[] sorted = AttentionBackends.CUDNN_FIRST.clone();
    Arrays.sort(sorted);
    assertArrayEquals(new long[] {0, 1, 2, 3, 4}, sorted);
    assertEquals(AttentionBackends.CUDNN, AttentionBackends.CUDNN_FIRST[0]);
  }

  @Test
  void withoutCudaTheOrderIsLeftAlone() {
    assumeFalse(torch.cuda_is_available(), "about CPU-only machines (CI)");
    int[] before = order();
    assertFalse(AttentionBackends.preferCudnnWhereFaster());
    assertArrayEquals(before, order());
  }

  private static int[] order() {
    IntPointer p = torch.globalContext().sDPPriorityOrder();
    int[] out = new int[AttentionBackends.CUDNN_FIRST.length];
    p.get(out);
    return out;
  }

  @Test
  void theChoiceIsReadFromLibtorchsDispatcher() {
    // On the CPU libtorch's fused choice is its flash-style CPU kernel or math, never cuDNN.
    Tensor q = torch.randn(1, 2, 8, 16);
    String chosen = AttentionBackends.chosenFor(q, q, q, 0.0);
    assertTrue(AttentionBackends.NAMES.contains(chosen), chosen);
    assertNotEquals("cudnn", chosen);
  }
}
