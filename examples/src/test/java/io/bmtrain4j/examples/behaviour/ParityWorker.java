package io.bmtrain4j.examples.behaviour;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.dist.DistContext;
import io.bmtrain4j.examples.behaviour.Training.Plan;
import io.bmtrain4j.examples.behaviour.Training.Result;
import io.bmtrain4j.zero.BlockOptions;
import java.time.Duration;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * One rank of the multi-process tests, started as torchrun starts a rank: a JVM whose environment
 * holds RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
 * {@code parity}: trains and checks parity with the plain model itself (exit 0, or 1 with the
 * failure). {@code dropout}: the same with dropout, every rank on the whole batch.
 * {@code die}: rank 1 exits abruptly mid-training; rank 0 must fail with a named collective.
 */
public final class ParityWorker {
  private ParityWorker() {}

  public static void main(String[] args) {
    String mode = args[0];
    DistContext ctx = Bmt.initDistributed(InitOptions.builder().seed(0).timeout(Duration.ofSeconds(20)).build());
    try {
      switch (mode) {
        case "parity": {
          Plan plan = Plan.of(ctx.worldSize(), BlockOptions.defaults());
          check(Training.plain(plan), List.of(Training.onRank(plan, ctx.rank(), false)));
          break;
        }
        case "dropout": {
          Plan plan = Plan.of(ctx.worldSize(), BlockOptions.defaults()).withDropout(0.3);
          Plan whole = Plan.of(1, plan.options()).withDropout(0.3);
          check(Training.plain(whole), List.of(Training.onRank(plan, ctx.rank(), true)));
          break;
        }
        case "resume": {
          ResumeRun.run(args[1], java.nio.file.Path.of(args[2]), ctx);
          break;
        }
        case "save-forever": {
          ShardedCheckpointRun.saveForever(java.nio.file.Path.of(args[1]), false);
          break;
        }
        case "save-forever-async": {
          ShardedCheckpointRun.saveForever(java.nio.file.Path.of(args[1]), true);
          break;
        }
        case "die": {
          torch.manual_seed(0);
          Net net = new DistributedNet(0, true);
          for (int step = 0; step < 100; step++) {
            if (step == 2 && ctx.rank() == 1) {
              System.out.println("rank 1 exits abruptly");
              System.out.flush();
              Runtime.getRuntime().halt(3);
            }
            Tensor l = Training.loss(net.forward(Training.tokens(0, 0, 2)), 0, 0, 2);
            l.backward();
            Bmt.finishBackward(net);
          }
          System.out.println("rank " + ctx.rank() + " finished without noticing the dead peer");
          System.exit(4);
          break;
        }
        default:
          throw new IllegalArgumentException("unknown mode " + mode);
      }
      System.out.println("rank " + ctx.rank() + " OK");
      System.out.flush();
      Runtime.getRuntime().halt(0);
    } catch (Throwable t) {
      System.out.println("rank " + ctx.rank() + " FAILED: " + t);
      t.printStackTrace(System.out);
      System.out.flush();
      Runtime.getRuntime().halt(1);
    }
  }

  private static void check(Result expected, List<Result> got) {
    ShardedTrainingTest.assertParity(expected, got);
  }
}
