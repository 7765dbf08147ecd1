package io.bmtrain4j.examples.init;

import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.launch.LaunchSpec;
import io.bmtrain4j.launch.LocalLauncher;
import io.bmtrain4j.testing.RanksAsThreads;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

/** Deferred initialisation: values independent of the world size, only shards ever resident. */
class DeferredInitTest {
  static Map<String, float[]> initAt(int world) {
    return RanksAsThreads.run(world, 42, Duration.ofSeconds(60), ctx -> {
      DeferredNet net = new DistributedDeferredNet(8, 16, 3);
      Bmt.initParameters(net);
      Map<String, float[]> out = new LinkedHashMap<>();
      Bmt.gatherParameters(net).forEach((k, v) -> out.put(k, values(v)));
      return out;
    }).get(0);
  }

  @Test
  void theLogicalParametersAreTheSameAtEveryWorldSize() {
    Map<String, float[]> one = initAt(1);
    for (int world : new int[] {2, 4}) {
      Map<String, float[]> other = initAt(world);
      assertEquals(one.keySet(), other.keySet());
      one.forEach((k, v) -> assertArrayEquals(v, other.get(k), 0f, k + " at world " + world));
    }
    float[] embed = one.get("embed");
    double sq = 0;
    for (float x : embed) {
      sq += x * x;
    }
    double std = Math.sqrt(sq / embed.length);
    assertTrue(std > 0.35 && std < 0.65, "normal(0.5): std " + std);
    for (float x : one.get("scale")) {
      assertEquals(1f, x);
    }
    for (float x : one.get("layers.1.b")) {
      assertEquals(0f, x);
    }
    double bound = Math.sqrt(6.0 / 32);
    for (float x : one.get("layers.2.w")) {
      assertTrue(Math.abs(x) <= bound, "xavier bound");
    }
  }

  @Test
  void aForwardBeforeInitParametersNamesTheParameter() {
    String message = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      DeferredNet net = new DistributedDeferredNet(8, 16, 1);
      return assertThrows(IllegalStateException.class, () -> net.forward(torch.ones(2, 8))).getMessage();
    }).get(0);
    assertTrue(message.contains("DeferredNet.embed") && message.contains("Bmt.initParameters"), message);
  }

  @Test
  void peakMemoryOfConstructionAndInitIsNearTheShardPlusOneBlock() {
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    int code = LocalLauncher.launch(LaunchSpec.of(4, InitMemoryWorker.class.getName()).withOutput(lines::add));
    assertEquals(0, code, String.join("\n", lines));
    Pattern p = Pattern.compile("peak growth (-?[0-9.]+) MiB, model ([0-9.]+) MiB, shard ([0-9.]+) MiB, block ([0-9.]+) MiB");
    int seen = 0;
    for (String line : lines) {
      Matcher m = p.matcher(line);
      if (m.find()) {
        seen++;
        double growth = Double.parseDouble(m.group(1));
        double model = Double.parseDouble(m.group(2));
        double shard = Double.parseDouble(m.group(3));
        double block = Double.parseDouble(m.group(4));
        // A shard, the largest block's flat buffer (or one whole parameter), and some allocator slack.
        assertTrue(growth < shard + block + 40, line);
        assertTrue(growth < model / 2, "far from the whole model: " + line);
      }
    }
    assertEquals(4, seen, String.join("\n", lines));
  }
}
