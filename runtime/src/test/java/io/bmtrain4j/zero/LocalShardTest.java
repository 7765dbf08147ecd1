package io.bmtrain4j.zero;

import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.natives.NativeLibraries;
import java.util.List;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The shard's named states: who keeps the values ({@link LocalShard.Keeper}), whether its storage
 * is held ({@link LocalShard.Residency}), and which access advances the write version.
 */
class LocalShardTest {
  @BeforeAll
  static void natives() {
    NativeLibraries.load();
  }

  /** Rank 1 of 2 over one 5-element parameter: a 3-element shard whose last element is padding. */
  private static LocalShard shard() {
    Tensor p = torch.zeros(5);
    FlatLayout layout = new FlatLayout(List.of("w"), List.of(p), java.util.Arrays.asList((io.bmtrain4j.init.Initializer) null), 2, 1);
    LocalShard s = new LocalShard("Block", layout, new TensorOptions());
    s.forWriting().copy_(torch.tensor(new float[] {1, 2, 0}));
    return s;
  }

  /** A source whose parameters' current values are {@code value} (the padding is left to the shard). */
  private static LocalShard.ShardSource constant(float value) {
    return into -> into.narrow(0, 0, 2).fill_(new Scalar(value));
  }

  @Test
  void onlyWritesAdvanceTheVersion() {
    LocalShard s = shard();
    long v = s.version();
    s.forReading();
    s.forOptimizerUpdate();
    assertEquals(v, s.version(), "reads and the keeper's own updates are not outside writes");
    s.forWriting();
    assertEquals(v + 1, s.version());
  }

  @Test
  void aShardKeptByItsSourceIsFreedAndRebuiltWithZeroPadding() {
    LocalShard s = shard();
    LocalShard.ShardSource source = constant(7);
    assertEquals(LocalShard.Keeper.SHARD, s.keeper());
    assertTrue(s.offerSource(source));
    assertEquals(LocalShard.Keeper.SOURCE, s.keeper());
    assertTrue(s.rebuiltFrom(source));
    assertFalse(s.matchesSource(), "the source has not said it matches yet");
    s.freeIfRebuildable();
    assertEquals(LocalShard.Residency.RESIDENT, s.residency(), "never freed before the source matches");

    s.sourceUpdated();
    assertEquals(LocalShard.Residency.FREED, s.residency());
    assertEquals(0, s.residentBytes());
    Tensor same = s.forReading();
    assertEquals(LocalShard.Residency.RESIDENT, s.residency());
    assertArrayEquals(new float[] {7, 7, 0}, values(same), "rebuilt from the source; padding zero");
  }

  @Test
  void aWriteKeepsTheShardUntilTheSourceHasTakenIt() {
    LocalShard s = shard();
    s.offerSource(constant(7));
    s.sourceUpdated();
    s.forWriting().fill_(new Scalar(3));
    assertFalse(s.matchesSource());
    s.freeIfRebuildable();
    assertEquals(LocalShard.Residency.RESIDENT, s.residency(), "a write the source lacks is never thrown away");
  }

  @Test
  void aSecondSourcePinsTheShardForGood() {
    LocalShard s = shard();
    LocalShard.ShardSource first = constant(7);
    assertTrue(s.offerSource(first));
    assertFalse(s.offerSource(constant(8)));
    assertEquals(LocalShard.Keeper.PINNED, s.keeper());
    assertFalse(s.rebuiltFrom(first));
    assertFalse(s.offerSource(constant(9)), "pinned stays pinned");
  }

  @Test
  void aShardLentToTheParametersIsRewrittenInPlaceNotFreed() {
    LocalShard s = shard();
    s.offerSource(constant(5));
    Tensor lent = s.lendToParameters();
    s.sourceUpdated();
    assertEquals(LocalShard.Residency.RESIDENT, s.residency());
    assertArrayEquals(new float[] {5, 5, 0}, values(lent));
    s.freeIfRebuildable();
    assertEquals(LocalShard.Residency.RESIDENT, s.residency(), "the parameters still view it");
    s.returnFromParameters();
    s.freeIfRebuildable();
    assertEquals(LocalShard.Residency.FREED, s.residency());
  }

  @Test
  void withdrawingTheSourceMakesTheShardKeepTheValuesAgain() {
    LocalShard s = shard();
    LocalShard.ShardSource source = constant(4);
    s.offerSource(source);
    s.sourceUpdated();
    s.withdrawSource(source);
    assertEquals(LocalShard.Keeper.SHARD, s.keeper());
    assertEquals(LocalShard.Residency.RESIDENT, s.residency());
    assertArrayEquals(new float[] {4, 4, 0}, values(s.forReading()));
    assertTrue(s.offerSource(constant(6)), "another optimizer may offer again");
  }
}
