package io.bmtrain4j.zero;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.zero.ActivationPlanner.BlockCost;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The activation budget's decision, on synthetic costs. */
class ActivationPlannerTest {
  static final long MIB = 1 << 20;

  static List<BlockCost> equalBlocks(int n, long keep, double keepMs, long selective, double selectiveMs) {
    List<BlockCost> costs = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      costs.add(new BlockCost("layers." + i, keep, keepMs, selective, selectiveMs));
    }
    return costs;
  }

  static long kept(Map<String, ActivationMode> plan, List<BlockCost> costs) {
    long sum = 0;
    for (BlockCost c : costs) {
      sum += c.bytes(plan.get(c.block()));
    }
    return sum;
  }

  @Test
  void neverExceedsTheHeadroomOnRandomCosts() {
    Random random = new Random(7);
    for (int trial = 0; trial < 500; trial++) {
      List<BlockCost> costs = new ArrayList<>();
      int n = 1 + random.nextInt(40);
      for (int i = 0; i < n; i++) {
        long keep = random.nextInt(1000) * MIB;
        boolean selective = random.nextBoolean();
        costs.add(new BlockCost("b" + i, keep, random.nextDouble() * 10,
            selective ? (long) (keep * random.nextDouble()) : 0, selective ? random.nextDouble() * 5 : 0));
      }
      long headroom = (long) (random.nextDouble() * n * 600) * MIB - 100 * MIB;
      Map<String, ActivationMode> plan = ActivationPlanner.plan(headroom, costs);
      assertEquals(n, plan.size());
      assertTrue(kept(plan, costs) <= Math.max(0, headroom), "kept " + kept(plan, costs) + " > headroom " + headroom);
    }
  }

  @Test
  void aHeadroomTooSmallForAnyBlockRecomputesEverything() {
    List<BlockCost> costs = equalBlocks(6, 100 * MIB, 5, 30 * MIB, 2);
    for (long headroom : new long[] {-5 * MIB, 0, 29 * MIB}) {
      Map<String, ActivationMode> plan = ActivationPlanner.plan(headroom, costs);
      assertTrue(plan.values().stream().allMatch(m -> m == ActivationMode.RECOMPUTE), headroom + ": " + plan);
    }
  }

  @Test
  void aHeadroomForEverythingKeepsEveryBlock() {
    List<BlockCost> costs = equalBlocks(6, 100 * MIB, 5, 30 * MIB, 2);
    Map<String, ActivationMode> plan = ActivationPlanner.plan(600 * MIB, costs);
    assertTrue(plan.values().stream().allMatch(m -> m == ActivationMode.KEEP), plan.toString());
  }

  @Test
  void cheapToKeepBlocksGoFirst() {
    List<BlockCost> costs = List.of(
        new BlockCost("costly", 400 * MIB, 5, 0, 0),
        new BlockCost("cheap", 100 * MIB, 5, 0, 0),
        new BlockCost("middling", 200 * MIB, 5, 0, 0));
    Map<String, ActivationMode> plan = ActivationPlanner.plan(320 * MIB, costs);
    assertEquals(Map.of("costly", ActivationMode.RECOMPUTE, "cheap", ActivationMode.KEEP, "middling", ActivationMode.KEEP),
        plan);
  }

  @Test
  void selectiveFillsWhatNoWholeBlockFitsAndEqualBlocksAreKeptFromTheFront() {
    // Attention at long sequences: 40% of the recompute time for 20% of the bytes.
    List<BlockCost> costs = equalBlocks(4, 100 * MIB, 10, 20 * MIB, 4);
    Map<String, ActivationMode> plan = ActivationPlanner.plan(250 * MIB, costs);
    // Selective first everywhere (0.2 ms/MiB against 0.1), then whole blocks while 80 MiB upgrades fit.
    assertEquals(List.of(ActivationMode.KEEP, ActivationMode.KEEP, ActivationMode.SELECTIVE, ActivationMode.SELECTIVE),
        new ArrayList<>(plan.values()));
    assertTrue(kept(plan, costs) <= 250 * MIB);
  }

  @Test
  void aBlockWithNoCostlyPartIsNeverSelective() {
    Map<String, ActivationMode> plan = ActivationPlanner.plan(50 * MIB, equalBlocks(3, 100 * MIB, 10, 0, 0));
    assertTrue(plan.values().stream().allMatch(m -> m == ActivationMode.RECOMPUTE), plan.toString());
  }

  @Test
  void aBlockCostedTwiceIsRefused() {
    assertThrows(IllegalArgumentException.class,
        () -> ActivationPlanner.plan(0, List.of(new BlockCost("a", 1, 1, 0, 0), new BlockCost("a", 1, 1, 0, 0))));
  }

  @Test
  void thePlanReadsAsRanges() {
    List<BlockCost> costs = equalBlocks(6, 100 * MIB, 10, 20 * MIB, 4);
    Map<String, ActivationMode> modes = ActivationPlanner.plan(260 * MIB, costs);
    ActivationPlan plan = new ActivationPlan("[8, 2048]", modes, costs, 1L << 33, 1L << 32);
    // Selective everywhere (120 MiB), then one 80 MiB upgrade to keep: 60 MiB is left, too little for another.
    assertEquals("activation plan for [8, 2048]: selective layers.1-5, keep layers.0;"
        + " keeps 200.0 MiB more than full recompute (peak 4.00 GiB, budget 8.00 GiB), saves 30.0 ms of recompute per step",
        plan.describe());
  }

  @Test
  void budgetsParseAsSharesOrSizesAndBadOnesAreNamed() {
    assertEquals(ActivationBudget.ofDevice(0.9), ActivationBudget.parse("90%"));
    assertEquals(ActivationBudget.ofBytes(60L << 30), ActivationBudget.parse("60GiB"));
    assertEquals(ActivationBudget.ofBytes(512L << 20), ActivationBudget.parse("512MiB"));
    assertEquals(ActivationBudget.ofBytes(1000), ActivationBudget.parse("1000"));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ActivationBudget.parse("lots"));
    assertTrue(e.getMessage().contains("'lots'") && e.getMessage().contains("90%"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> ActivationBudget.parse("150%"));
    assertEquals(90L << 30, ActivationBudget.parse("90%").resolve(100L << 30));
  }
}
