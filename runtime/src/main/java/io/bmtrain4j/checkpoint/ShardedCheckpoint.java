package io.bmtrain4j.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.bmtrain4j.Bmt;
import io.bmtrain4j.ShardedParameter;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.zero.ParameterGroup;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * Sharded checkpoints: every rank writes only its own slices (parameters and per-slice optimizer
 * state) to {@code step-N/rank-R.safetensors}; rank 0 adds the world-independent state (step
 * counts, loss scale, scheduler, generator) and, last, {@code step-N/meta.json} with the world
 * size and every rank's slice of every parameter; then {@code latest} is switched atomically to
 * {@code step-N}. A crash at any point leaves the previous checkpoint what {@code latest} names.
 *
 * <p>Loading at any world size reshards without gathering: each rank reads, from the old ranks'
 * files, exactly the element ranges that make up its new slices.
 */
public final class ShardedCheckpoint {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** Optimizer state keys {@code <parameter>.<suffix>} that hold one value per slice element. */
  private static final List<String> PER_ELEMENT = List.of("exp_avg", "exp_avg_sq", "master");

  private ShardedCheckpoint() {}

  /** Saves model and manager (may be null) as checkpoint {@code step} under {@code dir}. A collective. */
  public static void save(Path dir, Object model, OptimManager manager, long step) {
    Communicator comm = Bmt.context().communicator();
    int rank = comm.rank();
    Path stepDir = dir.resolve(String.format("step-%09d", step));
    try {
      Files.createDirectories(stepDir);
      Map<String, Tensor> mine = new LinkedHashMap<>();
      List<ShardedParameter> params = Bmt.parameters(model);
      for (ShardedParameter p : params) {
        mine.put("model/" + p.name(), p.readLocal());
      }
      if (manager != null) {
        Map<String, Tensor> train = manager.stateDict();
        for (Map.Entry<String, Tensor> e : train.entrySet()) {
          if (isPerElement(e.getKey(), params) || rank == 0) {
            mine.put("train/" + e.getKey(), e.getValue());
          }
        }
      }
      SafeTensorsFile.write(stepDir.resolve("rank-" + rank + ".safetensors"), mine,
          Map.of("rank", String.valueOf(rank), "world_size", String.valueOf(comm.worldSize())));
      comm.barrier(); // every rank's file is in place before the metadata says the checkpoint exists
      if (rank == 0) {
        writeMeta(stepDir, model, comm.worldSize(), step);
        Path tmp = dir.resolve("latest.tmp");
        Files.writeString(tmp, stepDir.getFileName().toString(), StandardCharsets.UTF_8);
        Files.move(tmp, dir.resolve("latest"), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      }
      comm.barrier();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write checkpoint " + stepDir, e);
    }
  }

  private static boolean isPerElement(String key, List<ShardedParameter> params) {
    for (ShardedParameter p : params) {
      for (String suffix : PER_ELEMENT) {
        if (key.endsWith("." + p.name() + "." + suffix)) {
          return true;
        }
      }
    }
    return false;
  }

  private static void writeMeta(Path stepDir, Object model, int world, long step) throws IOException {
    ObjectNode root = JSON.createObjectNode();
    root.put("format", "bmtrain4j-sharded-1");
    root.put("world_size", world);
    root.put("step", step);
    ObjectNode ps = root.putObject("parameters");
    for (io.bmtrain4j.zero.ShardedModuleRuntime r : Bmt.runtimeOf(model).tree()) {
      ParameterGroup g = r.group();
      if (g == null) {
        continue;
      }
      for (ParameterGroup.Member m : g.members()) {
        ObjectNode n = ps.putObject(r.keyPrefix() + m.name());
        n.putPOJO("shape", m.shape());
        n.put("dtype", SafeTensorsHeader.dtypeName(g.dtype()));
        ArrayNode slices = n.putArray("slices");
        for (int q = 0; q < world; q++) {
          long[] s = g.overlap(m, q);
          slices.addArray().add(s[0]).add(s[2]);
        }
      }
    }
    Path tmp = stepDir.resolve("meta.json.tmp");
    Files.write(tmp, JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(root));
    Files.move(tmp, stepDir.resolve("meta.json"), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** Whether {@code dir} holds a complete checkpoint. */
  public static boolean exists(Path dir) {
    return Files.isRegularFile(dir.resolve("latest"));
  }

  /**
   * Loads the checkpoint {@code latest} names into model and manager (may be null), at this job's
   * world size whatever the saving one was; returns its step. A collective only in the sense
   * that every rank must call it; no data moves between ranks.
   */
  public static long load(Path dir, Object model, OptimManager manager) {
    Path latest = dir.resolve("latest");
    if (!Files.isRegularFile(latest)) {
      throw new CheckpointException("no checkpoint in " + dir + " (no 'latest' file)");
    }
    try {
      Path stepDir = dir.resolve(Files.readString(latest, StandardCharsets.UTF_8).trim());
      Path metaFile = stepDir.resolve("meta.json");
      if (!Files.isRegularFile(metaFile)) {
        throw new CheckpointException(stepDir + " has no meta.json: the checkpoint is incomplete");
      }
      JsonNode meta;
      try {
        meta = JSON.readTree(metaFile.toFile());
      } catch (IOException e) {
        throw new CheckpointException(metaFile + " is corrupt: " + e.getMessage(), e);
      }
      int oldWorld = meta.get("world_size").asInt();
      List<SafeTensorsFile.Reader> readers = new ArrayList<>();
      try {
        for (int q = 0; q < oldWorld; q++) {
          readers.add(new SafeTensorsFile.Reader(stepDir.resolve("rank-" + q + ".safetensors")));
        }
        List<ShardedParameter> params = Bmt.parameters(model);
        JsonNode ps = meta.get("parameters");
        try (NoGradGuard g = new NoGradGuard()) {
          for (ShardedParameter p : params) {
            JsonNode pm = ps.get(p.name());
            if (pm == null) {
              throw new CheckpointException(metaFile + " has no parameter '" + p.name() + "' (saved from another model?)");
            }
            long[] shape = JSON.convertValue(pm.get("shape"), long[].class);
            if (!java.util.Arrays.equals(shape, p.shape())) {
              throw new CheckpointException("'" + p.name() + "' in " + metaFile + " has shape " + java.util.Arrays.toString(shape)
                  + " but the model's is " + java.util.Arrays.toString(p.shape()));
            }
            gather(readers, pm.get("slices"), "model/" + p.name(), p.offsetInParameter(), p.local());
          }
          if (manager != null) {
            Map<String, Tensor> wanted = manager.stateDict();
            Map<String, Tensor> state = new LinkedHashMap<>();
            for (Map.Entry<String, Tensor> e : wanted.entrySet()) {
              String key = e.getKey();
              ShardedParameter owner = perElementOwner(key, params);
              if (owner != null) {
                Tensor t = torch.empty(new long[] {owner.localLength()}, e.getValue().options(), new MemoryFormatOptional());
                gather(readers, ps.get(owner.name()).get("slices"), "train/" + key, owner.offsetInParameter(), t);
                state.put(key, t);
              } else {
                SafeTensorsHeader.Entry entry = readers.get(0).entry("train/" + key);
                Tensor t = torch.empty(entry.shape(), e.getValue().options(), new MemoryFormatOptional());
                readers.get(0).read("train/" + key, 0, t.numel(), t);
                state.put(key, t);
              }
            }
            manager.loadStateDict(state);
          }
        }
      } finally {
        for (SafeTensorsFile.Reader r : readers) {
          r.close();
        }
      }
      return meta.get("step").asLong();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read checkpoint in " + dir, e);
    }
  }

  private static ShardedParameter perElementOwner(String key, List<ShardedParameter> params) {
    for (ShardedParameter p : params) {
      for (String suffix : PER_ELEMENT) {
        if (key.endsWith("." + p.name() + "." + suffix)) {
          return p;
        }
      }
    }
    return null;
  }

  /**
   * Fills {@code target} (this rank's new slice, starting at {@code begin} of the flattened
   * parameter) from the old ranks' slices that overlap it.
   */
  private static void gather(List<SafeTensorsFile.Reader> readers, JsonNode slices, String key, long begin, Tensor target)
      throws IOException {
    long end = begin + target.numel();
    for (int q = 0; q < readers.size(); q++) {
      long qBegin = slices.get(q).get(0).asLong();
      long qEnd = qBegin + slices.get(q).get(1).asLong();
      long from = Math.max(begin, qBegin);
      long to = Math.min(end, qEnd);
      if (to > from) {
        Tensor part = target.narrow(0, from - begin, to - from);
        readers.get(q).read(key, from - qBegin, to - from, part);
      }
    }
  }
}
