package io.bmtrain4j.zero;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.testing.RanksAsThreads;
import java.time.Duration;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

/** What a generated class's {@code @Distributed Tensor} fields become: null ones nothing, shared ones an error. */
class DistributedFieldsTest {
  @Test
  void aFieldLeftNullIsNotAParameterAndATensorInTwoFieldsIsRefusedWithTheWayToTieThem() {
    RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      Tensor embed = torch.ones(4, 3).requires_grad_(true);
      ShardedModuleRuntime tied = ShardedModuleRuntime.builder("Lm").tensor("embed", embed).tensor("head", null).build();
      assertEquals(List.of("embed"), tied.group().members().stream().map(FlatLayout.Member::name).toList());
      IllegalStateException e = assertThrows(IllegalStateException.class,
          () -> ShardedModuleRuntime.builder("Lm").tensor("embed", embed).tensor("head", embed));
      assertTrue(e.getMessage().contains("Lm.head holds the same tensor as Lm.embed")
          && e.getMessage().contains("leave head null and use embed"), e.getMessage());
      return null;
    });
  }
}
