package io.bmtrain4j.zero;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** The builder the generated classes use: the record's defaults and validation, by name. */
class BlockOptionsTest {
  @Test
  void builderStartsFromTheDefaults() {
    assertEquals(new BlockOptions(3, true, 2, true), BlockOptions.builder().build());
    assertEquals(BlockOptions.defaults(), BlockOptions.builder().build());
  }

  @Test
  void builderSetsEachOptionByName() {
    BlockOptions options = BlockOptions.builder()
        .zeroLevel(2).recompute(false).maxGatheredBlocks(1).earlyStop(false).build();
    assertEquals(new BlockOptions(2, false, 1, false), options);
  }

  @Test
  void builderValidatesAsTheConstructorDoes() {
    IllegalArgumentException zero = assertThrows(IllegalArgumentException.class,
        () -> BlockOptions.builder().zeroLevel(1).build());
    assertEquals("zeroLevel must be 2 or 3, got 1", zero.getMessage());
    IllegalArgumentException gathered = assertThrows(IllegalArgumentException.class,
        () -> BlockOptions.builder().maxGatheredBlocks(0).build());
    assertEquals("maxGatheredBlocks must be at least 1, got 0", gathered.getMessage());
  }
}
