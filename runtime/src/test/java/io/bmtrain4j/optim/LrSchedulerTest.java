package io.bmtrain4j.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.optim.lr.LrScheduler;
import io.bmtrain4j.optim.lr.LrSchedulers;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;

class LrSchedulerTest {
  /** An optimizer with no parameters: records the rate the scheduler sets. */
  static final class Recorder extends ShardedOptimizer {
    Recorder() {
      super(List.of(), 0);
    }

    @Override
    public void step(double gradScale) {}

    @Override
    public Map<String, Tensor> stateDict() {
      return Map.of();
    }

    @Override
    public void loadStateDict(Map<String, Tensor> state) {}
  }

  private static LrScheduler make(String name, Recorder r) {
    return LrSchedulers.create(name, r, 1.0, 10, 110, 0.9);
  }

  @Test
  void everyScheduleWarmsUpLinearly() {
    for (String name : LrSchedulers.NAMES) {
      Recorder r = new Recorder();
      LrScheduler s = make(name, r);
      assertEquals(0.0, r.learningRate(), 1e-12, name);
      for (int i = 0; i < 5; i++) {
        s.step();
      }
      assertEquals(0.5, r.learningRate(), 1e-12, name + " halfway through warmup");
      assertEquals(name, s.name());
    }
  }

  @Test
  void decaysFollowTheirFormulas() {
    Recorder r = new Recorder();
    assertEquals(1.0, make("noDecay", r).lrAt(100), 1e-12);
    assertEquals(Math.sqrt(10.0 / 40), make("noam", r).lrAt(40), 1e-12);
    assertEquals(0.5, make("linear", r).lrAt(60), 1e-12);
    assertEquals(0.0, make("linear", r).lrAt(200), 1e-12);
    assertEquals(0.5, make("cosine", r).lrAt(60), 1e-12);
    assertEquals(1.0, make("cosine", r).lrAt(10), 1e-12);
    assertEquals(0.0, make("cosine", r).lrAt(110), 1e-12);
    assertEquals(Math.pow(0.9, 5), make("exponential", r).lrAt(15), 1e-12);
  }

  @Test
  void stateDictRestoresTheIteration() {
    Recorder a = new Recorder();
    LrScheduler s = make("cosine", a);
    for (int i = 0; i < 37; i++) {
      s.step();
    }
    Recorder b = new Recorder();
    LrScheduler t = make("cosine", b);
    t.loadStateDict(s.stateDict());
    assertEquals(37, t.iteration());
    assertEquals(a.learningRate(), b.learningRate(), 0.0);
  }

  @Test
  void unknownNamesAreRejectedListingTheKnownOnes() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> LrSchedulers.create("warmupCosine", new Recorder(), 1, 1, 2, 1));
    assertTrue(e.getMessage().contains("unknown learning-rate schedule 'warmupCosine'"), e.getMessage());
    assertTrue(e.getMessage().contains("cosine"), e.getMessage());
  }
}
