package io.bmtrain4j;

import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.bmtrain4j.dist.ReduceOperation;
import io.bmtrain4j.testing.RanksAsThreads;
import java.time.Duration;
import java.util.List;
import java.util.function.BiFunction;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

/**
 * Bmt's collectives carry gradients: each rank takes loss = sum(y * w_rank) with w_rank = rank+1,
 * so the expected input gradients follow from the collective's definition.
 */
class DifferentiableCollectivesTest {
  private static final int WORLD = 2;

  /** Runs {@code op} on x = [1, 2] + 10 rank (requires grad); returns {y, x.grad} per rank. */
  private static List<float[][]> run(BiFunction<Tensor, Integer, Tensor> op) {
    return RanksAsThreads.run(WORLD, 0, Duration.ofSeconds(30), ctx -> {
      Tensor x = torch.arange(new Scalar(1), new Scalar(3)).to(torch.ScalarType.Float)
          .add(new Scalar(10.0 * ctx.rank())).requires_grad_(true);
      Tensor y = op.apply(x, ctx.rank());
      y.mul(new Scalar(ctx.rank() + 1.0)).sum().backward();
      return new float[][] {values(y), values(x.grad())};
    });
  }

  @Test
  void allGatherStacksAndReduceScattersGradients() {
    List<float[][]> r = run((x, rank) -> Bmt.allGather(x));
    for (int rank = 0; rank < WORLD; rank++) {
      assertArrayEquals(new float[] {1, 2, 11, 12}, r.get(rank)[0]);
      // d/dx_rank of sum_q (q+1) * sum(y) = sum over ranks q of (q+1) = 3
      assertArrayEquals(new float[] {3, 3}, r.get(rank)[1]);
    }
  }

  @Test
  void allReduceSumsAndAllReducesGradients() {
    List<float[][]> r = run((x, rank) -> Bmt.allReduce(x, ReduceOperation.SUM));
    for (int rank = 0; rank < WORLD; rank++) {
      assertArrayEquals(new float[] {12, 14}, r.get(rank)[0]);
      assertArrayEquals(new float[] {3, 3}, r.get(rank)[1]);
    }
  }

  @Test
  void reduceScatterKeepsThisRanksSliceAndAllGathersGradients() {
    List<float[][]> r = run((x, rank) -> Bmt.reduceScatter(x, ReduceOperation.SUM));
    assertArrayEquals(new float[] {12}, r.get(0)[0]);
    assertArrayEquals(new float[] {14}, r.get(1)[0]);
    for (int rank = 0; rank < WORLD; rank++) {
      // x's element q goes to rank q's output, whose loss weight is q+1.
      assertArrayEquals(new float[] {1, 2}, r.get(rank)[1]);
    }
  }

  @Test
  void broadcastCopiesTheRootAndSumsGradientsIntoIt() {
    List<float[][]> r = run((x, rank) -> Bmt.broadcast(x, 0));
    for (int rank = 0; rank < WORLD; rank++) {
      assertArrayEquals(new float[] {1, 2}, r.get(rank)[0]);
    }
    assertArrayEquals(new float[] {3, 3}, r.get(0)[1]);
    assertArrayEquals(new float[] {0, 0}, r.get(1)[1]);
  }
}
