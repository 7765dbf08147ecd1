package io.bmtrain4j.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.testing.RanksAsThreads;
import java.time.Duration;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

class CollectiveWaitsTest {
  private static final long LATE_MS = 1000;

  @Test
  void aRankWhosePeerIsLateWaitsForItAndTheMeterSaysHowLong() {
    List<CollectiveWaits.Report> reports = RanksAsThreads.run(2, 0, Duration.ofSeconds(30), ctx -> {
      Communicator c = ctx.communicator();
      CollectiveWaits waits = ctx.comm().collectiveWaits();
      c.barrier();
      waits.start();
      if (ctx.rank() == 1) {
        Thread.sleep(LATE_MS); // rank 0's all-gather cannot finish before rank 1 joins it
      }
      Tensor gathered = torch.empty(8);
      c.allGather(gathered, torch.ones(4)).await();
      CollectiveHandle scatter = c.reduceScatter(torch.empty(2), torch.ones(4), ReduceOperation.SUM);
      scatter.await();
      scatter.await(); // a second await is not a second wait
      c.allReduce(torch.ones(3), ReduceOperation.SUM); // issued, never awaited
      CollectiveWaits.Report report = waits.stop();
      c.allGather(torch.empty(8), torch.ones(4)).await(); // after stop: not counted anywhere
      waits.start();
      CollectiveWaits.Report empty = waits.stop();
      assertTrue(empty.kinds().isEmpty(), empty.describe(1));
      c.barrier();
      return report;
    });
    CollectiveWaits.Report early = reports.get(0);
    CollectiveWaits.Report late = reports.get(1);
    for (CollectiveWaits.Report r : reports) {
      assertEquals(new CollectiveWaits.Kind("all-gather", 1, 16, 1, r.kind("all-gather").waitedNanos()), r.kind("all-gather"));
      assertEquals(1, r.kind("reduce-scatter").issued());
      assertEquals(1, r.kind("reduce-scatter").awaited());
      assertEquals(1, r.kind("all-reduce").issued());
      assertEquals(0, r.kind("all-reduce").awaited());
      assertEquals(0, r.kind("broadcast").issued());
    }
    assertTrue(early.kind("all-gather").waitedMillis() >= LATE_MS * 0.75, early.describe(1));
    assertTrue(late.kind("all-gather").waitedMillis() < LATE_MS * 0.5, late.describe(1));
    assertTrue(early.describe(1).startsWith("all-gather: 1.0 issued (0.00 GiB), waited "), early.describe(1));
  }

  @Test
  void aWorldOfOneWaitsForNothing() {
    List<CollectiveWaits.Report> reports = RanksAsThreads.run(1, 0, Duration.ofSeconds(30), ctx -> {
      CollectiveWaits waits = ctx.comm().collectiveWaits();
      waits.start();
      ctx.communicator().allGather(torch.empty(4), torch.ones(4)).await();
      return waits.stop();
    });
    CollectiveWaits.Kind k = reports.get(0).kind("all-gather");
    assertEquals(1, k.issued());
    assertTrue(k.waitedMillis() < 50, reports.get(0).describe(1));
  }
}
