package io.bmtrain4j.examples.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.launch.LaunchSpec;
import io.bmtrain4j.launch.LocalLauncher;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The GPU benchmark main, run on the CPU (Gloo) on 2 ranks with a tiny model, so CI notices when
 * it breaks: it must time both prefetch settings and recompute without early stop, measure the all-gathers, report the phases and
 * end with the RESULT line {@code bench/gpu-compare.sh} collects.
 */
class GptThroughputTest {
  @Test
  void twoCpuRanksPrintEveryFigureAndTheResultLine() {
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    int code = LocalLauncher.launch(LaunchSpec.of(2, GptThroughput.class.getName(), "--device", "cpu", "--model", "tiny",
        "--seq", "32", "--vocab", "64", "--micro-batch", "2", "--steps", "2", "--warmup", "1", "--rounds", "1",
        "--phases", "--activation-rounds").withOutput(lines::add));
    String all = String.join("\n", lines);
    assertEquals(0, code, all);
    assertTrue(all.contains("no-prefetch"), all);
    assertTrue(all.contains("all-gathers alone:"), all);
    assertTrue(all.contains("no-early-stop"), all);
    assertTrue(all.contains("phases (first variant, synchronised"), all);
    assertTrue(all.contains("selective ") && all.contains("keep-all "), all);
    assertTrue(all.contains("budget: activation plan for [2, 32]: keep layers.0-3;"), all);
    assertTrue(all.contains("RESULT impl=bmtrain4j-budget model=tiny gpus=2"), all);
    String result = lines.stream().filter(l -> l.contains("RESULT impl=bmtrain4j ")).findFirst().orElse("");
    assertTrue(result.contains("model=tiny gpus=2 tokens_per_s_per_gpu="), all);
    double loss = Double.parseDouble(result.replaceAll(".*loss=", ""));
    assertTrue(loss > 0 && loss < 10, "loss " + loss + " of random tokens over 64 classes should be near ln 64 = 4.2");
  }

  /**
   * picocli's negatable options set the opposite of the default when given by their declared
   * name, so a true-by-default switch must be declared by its --no- name: declared as
   * --cudnn-attention, {@code --no-cudnn-attention} left cuDNN preferred.
   */
  @Test
  void switchesThatAreOnByDefaultTurnOffWithTheirNoForm() {
    GptThroughput defaults = new GptThroughput();
    new picocli.CommandLine(defaults).parseArgs();
    assertTrue(defaults.workload.cudnnAttention && defaults.fullRecompute && defaults.prefetchOff);
    GptThroughput off = new GptThroughput();
    new picocli.CommandLine(off).parseArgs("--no-cudnn-attention", "--no-full-recompute-rounds", "--no-prefetch-rounds");
    assertFalse(off.workload.cudnnAttention || off.fullRecompute || off.prefetchOff);
    GptThroughput on = new GptThroughput();
    new picocli.CommandLine(on).parseArgs("--cudnn-attention", "--full-recompute-rounds", "--prefetch-rounds");
    assertTrue(on.workload.cudnnAttention && on.fullRecompute && on.prefetchOff);
    StepAnatomy anatomy = new StepAnatomy();
    new picocli.CommandLine(anatomy).parseArgs("--no-cudnn-attention");
    assertFalse(anatomy.workload.cudnnAttention);
  }
}
