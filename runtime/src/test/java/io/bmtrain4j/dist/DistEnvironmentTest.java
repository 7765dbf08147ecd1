package io.bmtrain4j.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class DistEnvironmentTest {
  private static Map<String, String> torchrun(String rank, String world) {
    Map<String, String> env = new HashMap<>();
    env.put("RANK", rank);
    env.put("WORLD_SIZE", world);
    env.put("LOCAL_RANK", rank);
    env.put("LOCAL_WORLD_SIZE", world);
    env.put("MASTER_ADDR", "127.0.0.1");
    env.put("MASTER_PORT", "29511");
    return env;
  }

  @Test
  void readsTorchrunVariables() {
    Map<String, String> env = torchrun("1", "4");
    env.put("TORCHELASTIC_USE_AGENT_STORE", "True");
    DistEnvironment e = DistEnvironment.fromEnvironment(env);
    assertEquals(1, e.rank());
    assertEquals(4, e.worldSize());
    assertEquals(29511, e.masterPort());
    assertTrue(e.agentStore());
    assertEquals(DistEnvironment.Launcher.TORCHRUN, e.launcher());
  }

  @Test
  void fallsBackToSlurmThenToOneProcess() {
    Map<String, String> slurm = Map.of("SLURM_PROCID", "3", "SLURM_NTASKS", "8", "SLURM_LOCALID", "1",
        "SLURM_NTASKS_PER_NODE", "4(x2)", "SLURM_LAUNCH_NODE_IPADDR", "10.0.0.1");
    DistEnvironment e = DistEnvironment.fromEnvironment(slurm);
    assertEquals(3, e.rank());
    assertEquals(8, e.worldSize());
    assertEquals(4, e.localWorldSize());
    assertEquals("10.0.0.1", e.masterAddr());
    assertEquals(DistEnvironment.Launcher.SLURM, e.launcher());
    assertEquals(1, DistEnvironment.fromEnvironment(Map.of()).worldSize());
  }

  @Test
  void malformedVariablesAreNamed() {
    Map<String, String> env = torchrun("x", "2");
    assertTrue(assertThrows(IllegalArgumentException.class, () -> DistEnvironment.fromEnvironment(env))
        .getMessage().contains("RANK=x is not an integer"));
    Map<String, String> tooBig = torchrun("2", "2");
    assertTrue(assertThrows(IllegalArgumentException.class, () -> DistEnvironment.fromEnvironment(tooBig))
        .getMessage().contains("RANK=2 must be in [0, WORLD_SIZE=2)"));
    Map<String, String> noAddr = torchrun("0", "2");
    noAddr.remove("MASTER_ADDR");
    assertTrue(assertThrows(IllegalArgumentException.class, () -> DistEnvironment.fromEnvironment(noAddr))
        .getMessage().contains("MASTER_ADDR is not set"));
    Map<String, String> badPort = torchrun("0", "2");
    badPort.put("MASTER_PORT", "70000");
    assertTrue(assertThrows(IllegalArgumentException.class, () -> DistEnvironment.fromEnvironment(badPort))
        .getMessage().contains("MASTER_PORT=70000"));
  }

  @Test
  void aWorldOfOneNeedsNoMaster() {
    DistEnvironment e = DistEnvironment.fromEnvironment(Map.of("RANK", "0", "WORLD_SIZE", "1"));
    assertEquals(1, e.worldSize());
    assertEquals(0, e.rank());
    Map<String, String> two = torchrun("0", "2");
    two.remove("MASTER_ADDR");
    assertThrows(IllegalArgumentException.class, () -> DistEnvironment.fromEnvironment(two), "a world of two still needs one");
  }
}
