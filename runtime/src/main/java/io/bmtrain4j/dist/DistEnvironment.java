package io.bmtrain4j.dist;

import java.util.Map;

/**
 * Where this process sits in the job, read from the launcher's environment: torchrun's variables
 * first ({@code RANK}, {@code WORLD_SIZE}, {@code LOCAL_RANK}, {@code LOCAL_WORLD_SIZE},
 * {@code MASTER_ADDR}, {@code MASTER_PORT}), then Slurm's ({@code SLURM_PROCID},
 * {@code SLURM_NTASKS}, {@code SLURM_LOCALID}, {@code SLURM_NTASKS_PER_NODE}, with
 * {@code MASTER_ADDR}/{@code MASTER_PORT} or {@code SLURM_LAUNCH_NODE_IPADDR}), else a single
 * process. Malformed values fail with an error naming the variable.
 */
public record DistEnvironment(
    int rank,
    int worldSize,
    int localRank,
    int localWorldSize,
    String masterAddr,
    int masterPort,
    Launcher launcher,
    boolean agentStore) {

  /** Which launcher's variables were found. */
  public enum Launcher {
    TORCHRUN,
    SLURM,
    SINGLE_PROCESS
  }

  public static final int DEFAULT_PORT = 29500;

  public static DistEnvironment single() {
    return new DistEnvironment(0, 1, 0, 1, "127.0.0.1", DEFAULT_PORT, Launcher.SINGLE_PROCESS, false);
  }

  public static DistEnvironment fromEnvironment(Map<String, String> env) {
    if (env.containsKey("RANK") || env.containsKey("WORLD_SIZE")) {
      int world = positive(env, "WORLD_SIZE");
      int rank = rankBelow(env, "RANK", world, "WORLD_SIZE");
      int localWorld = env.containsKey("LOCAL_WORLD_SIZE") ? positive(env, "LOCAL_WORLD_SIZE") : world;
      int localRank = env.containsKey("LOCAL_RANK") ? rankBelow(env, "LOCAL_RANK", localWorld, "LOCAL_WORLD_SIZE") : rank % localWorld;
      // A world of one needs no master: nobody has to find it.
      String addr = world == 1 && !env.containsKey("MASTER_ADDR") ? "127.0.0.1" : required(env, "MASTER_ADDR", "the address of rank 0's host");
      int port = world == 1 && !env.containsKey("MASTER_PORT") ? DEFAULT_PORT : port(env, "MASTER_PORT");
      boolean agent = "true".equalsIgnoreCase(env.getOrDefault("TORCHELASTIC_USE_AGENT_STORE", "false"));
      return new DistEnvironment(rank, world, localRank, localWorld, addr, port, Launcher.TORCHRUN, agent);
    }
    if (env.containsKey("SLURM_PROCID")) {
      int world = positive(env, "SLURM_NTASKS");
      int rank = rankBelow(env, "SLURM_PROCID", world, "SLURM_NTASKS");
      int localWorld = env.containsKey("SLURM_NTASKS_PER_NODE") ? leadingInt(env, "SLURM_NTASKS_PER_NODE") : 1;
      int localRank = env.containsKey("SLURM_LOCALID") ? rankBelow(env, "SLURM_LOCALID", localWorld, "SLURM_NTASKS_PER_NODE") : 0;
      String addr = env.containsKey("MASTER_ADDR") ? env.get("MASTER_ADDR") : env.get("SLURM_LAUNCH_NODE_IPADDR");
      if (addr == null || addr.isBlank()) {
        throw new EnvironmentException(
            "MASTER_ADDR is not set and Slurm gave no SLURM_LAUNCH_NODE_IPADDR: export MASTER_ADDR=<rank 0's host> in the job script");
      }
      int port = env.containsKey("MASTER_PORT") ? port(env, "MASTER_PORT") : DEFAULT_PORT;
      return new DistEnvironment(rank, world, localRank, localWorld, addr, port, Launcher.SLURM, false);
    }
    return single();
  }

  private static String required(Map<String, String> env, String name, String what) {
    String v = env.get(name);
    if (v == null || v.isBlank()) {
      throw new EnvironmentException(name + " is not set: it must hold " + what + " (torchrun sets it)");
    }
    return v.trim();
  }

  private static int integer(Map<String, String> env, String name) {
    String v = required(env, name, "an integer");
    try {
      return Integer.parseInt(v);
    } catch (NumberFormatException e) {
      throw new EnvironmentException(name + "=" + v + " is not an integer");
    }
  }

  private static int positive(Map<String, String> env, String name) {
    int v = integer(env, name);
    if (v < 1) {
      throw new EnvironmentException(name + "=" + v + " must be at least 1");
    }
    return v;
  }

  private static int rankBelow(Map<String, String> env, String name, int bound, String boundName) {
    int v = integer(env, name);
    if (v < 0 || v >= bound) {
      throw new EnvironmentException(
          name + "=" + v + " must be in [0, " + boundName + "=" + bound + ")");
    }
    return v;
  }

  private static int port(Map<String, String> env, String name) {
    int v = integer(env, name);
    if (v < 1 || v > 65535) {
      throw new EnvironmentException(name + "=" + v + " is not a TCP port (1..65535)");
    }
    return v;
  }

  private static int leadingInt(Map<String, String> env, String name) {
    String v = env.get(name).trim();
    int end = 0;
    while (end < v.length() && Character.isDigit(v.charAt(end))) {
      end++;
    }
    if (end == 0) {
      throw new EnvironmentException(name + "=" + v + " does not start with an integer");
    }
    return Integer.parseInt(v.substring(0, end));
  }
}
