package io.bmtrain4j.store;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.bmtrain4j.zero.ShardedModuleRuntime;
import io.bmtrain4j.zero.ShardedModules;
import io.bmtrain4j.zero.ShardedParameter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Function;
import org.bytedeco.pytorch.NoGradGuard;

/**
 * Model directories as Hugging Face {@code transformers} writes and reads them: one
 * {@code model.safetensors}, or shards {@code model-0000i-of-0000n.safetensors} named by
 * {@code model.safetensors.index.json}. A key map turns the model's parameter names (field paths
 * such as {@code layers.3.wq}) into the checkpoint's ({@code model.layers.3.self_attn.q_proj.weight}).
 *
 * <p>Loading needs no communication: each rank reads from the files only the byte ranges of its own
 * shard slices, converting the dtype when the file's differs (a bf16 checkpoint into an fp32 model).
 * Saving streams block by block ({@link WholeModelWriter}), every rank taking part in one block's
 * all-gather at a time while rank 0 writes, starting a new file whenever the next
 * tensor would take the current one past the size limit (as {@code save_pretrained}'s
 * {@code max_shard_size}); each file is renamed into place when complete, the index last.
 */
public final class HuggingFaceCheckpoint {
  private static final ObjectMapper JSON = new ObjectMapper();
  static final String SINGLE = "model.safetensors";
  static final String INDEX = "model.safetensors.index.json";

  private HuggingFaceCheckpoint() {}

  /**
   * Fills this rank's shards of {@code model} from the model directory {@code dir}. Every
   * parameter must be there with the model's shape; with {@code strict}, the files may hold no
   * other tensors either. Errors name the file and the key.
   */
  public static void load(Object model, Path dir, Function<String, String> keyMap, boolean strict) {
    Map<String, Path> fileOf = weightMap(dir);
    List<ShardedParameter> params = ShardedModules.parameters(model);
    Map<Path, SafeTensorsFile.Reader> open = new HashMap<>();
    try (NoGradGuard g = new NoGradGuard()) {
      List<String> missing = new ArrayList<>();
      Set<String> used = new LinkedHashSet<>();
      for (ShardedParameter p : params) {
        String key = keyMap.apply(p.name());
        Path file = fileOf.get(key);
        if (file == null || !reader(open, file).header().entries().containsKey(key)) {
          missing.add("'" + key + "' (for " + p.name() + ")" + (file == null ? "" : " in " + file.getFileName()));
          continue;
        }
        used.add(key);
        SafeTensorsHeader.Entry e = reader(open, file).entry(key);
        if (!Arrays.equals(e.shape(), p.shape())) {
          throw new CheckpointException("'" + key + "' in " + file + " has shape " + Arrays.toString(e.shape())
              + " but the model's " + p.name() + " is " + Arrays.toString(p.shape())
              + ": the checkpoint is of another model size (check the model's config)");
        }
      }
      if (!missing.isEmpty()) {
        throw new CheckpointException(dir + " lacks " + missing.size() + " tensor(s) of this model: "
            + (missing.size() > 8 ? missing.subList(0, 8) + " and " + (missing.size() - 8) + " more" : missing)
            + ": is it a checkpoint of this architecture, and does the key map match it?");
      }
      if (strict) {
        List<String> unexpected = new ArrayList<>();
        for (Map.Entry<String, Path> e : fileOf.entrySet()) {
          if (!used.contains(e.getKey())) {
            unexpected.add("'" + e.getKey() + "' in " + e.getValue().getFileName());
          }
        }
        if (!unexpected.isEmpty()) {
          throw new CheckpointException(dir + " holds " + unexpected.size() + " tensor(s) this model has no parameter for: "
              + (unexpected.size() > 8 ? unexpected.subList(0, 8) + " and " + (unexpected.size() - 8) + " more" : unexpected)
              + " (load with strict = false to ignore them)");
        }
      }
      for (ShardedParameter p : params) {
        if (p.localLength() > 0) {
          String key = keyMap.apply(p.name());
          // Scoped: the slice view would otherwise keep the shard's storage past a later free.
          try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope()) {
            reader(open, fileOf.get(key)).readConverting(key, p.offsetInParameter(), p.localLength(), p.local());
          }
        }
        p.markLoaded();
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the checkpoint in " + dir, e);
    } finally {
      for (SafeTensorsFile.Reader r : open.values()) {
        try {
          r.close();
        } catch (IOException ignored) {
          // Reading is over; a failing close loses nothing.
        }
      }
    }
  }

  /** Each tensor's file: from the index if there is one, else everything in {@code model.safetensors}. */
  static Map<String, Path> weightMap(Path dir) {
    Path index = dir.resolve(INDEX);
    Path single = dir.resolve(SINGLE);
    Map<String, Path> out = new LinkedHashMap<>();
    try {
      if (Files.isRegularFile(index)) {
        JsonNode root;
        try {
          root = JSON.readTree(index.toFile());
        } catch (IOException e) {
          throw new CheckpointException(index + " is not valid JSON: " + e.getMessage(), e);
        }
        JsonNode map = root == null ? null : root.get("weight_map");
        if (map == null || !map.isObject()) {
          throw new CheckpointException(index + " has no \"weight_map\" object: it is not a safetensors index");
        }
        for (var it = map.fields(); it.hasNext(); ) {
          var e = it.next();
          Path file = dir.resolve(e.getValue().asText());
          if (!file.normalize().startsWith(dir.normalize()) || !Files.isRegularFile(file)) {
            throw new CheckpointException(index + " names " + e.getValue().asText() + " for '" + e.getKey()
                + "', which is not a file in " + dir);
          }
          out.put(e.getKey(), file);
        }
      } else if (Files.isRegularFile(single)) {
        try (SafeTensorsFile.Reader r = new SafeTensorsFile.Reader(single)) {
          for (String key : r.header().entries().keySet()) {
            out.put(key, single);
          }
        }
      } else {
        throw new CheckpointException("no Hugging Face checkpoint in " + dir + ": expected " + SINGLE + " or " + INDEX
            + " (a directory as transformers' save_pretrained writes it)");
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the checkpoint in " + dir, e);
    }
    return out;
  }

  private static SafeTensorsFile.Reader reader(Map<Path, SafeTensorsFile.Reader> open, Path file) throws IOException {
    SafeTensorsFile.Reader r = open.get(file);
    if (r == null) {
      r = new SafeTensorsFile.Reader(file);
      open.put(file, r);
    }
    return r;
  }

  /**
   * Writes the whole model into {@code dir} (a collective: every rank calls it; rank 0 writes),
   * in files of at most {@code maxFileBytes} each (a tensor larger than that gets a file of its
   * own), with an index when there is more than one file. Other files in {@code dir}
   * ({@code config.json}, the tokenizer's) are the caller's.
   */
  public static void save(Object model, Path dir, Function<String, String> keyMap, long maxFileBytes) {
    ShardedModuleRuntime root = ShardedModules.runtimeOf(model);
    // The files, planned before any communication: every rank walks the same blocks in order.
    List<List<WholeModelWriter.NamedParameter>> files = new ArrayList<>();
    long current = 0;
    for (WholeModelWriter.NamedParameter s : WholeModelWriter.plan(root, keyMap)) {
      if (files.isEmpty() || (current > 0 && current + s.bytes() > maxFileBytes)) {
        files.add(new ArrayList<>());
        current = 0;
      }
      files.get(files.size() - 1).add(s);
      current += s.bytes();
    }
    List<String> names = new ArrayList<>();
    for (int i = 0; i < files.size(); i++) {
      names.add(files.size() == 1 ? SINGLE : String.format("model-%05d-of-%05d.safetensors", i + 1, files.size()));
    }
    WholeModelWriter.write(root, dir, files, names, Map.of("format", "pt"), "the checkpoint into " + dir,
        () -> Files.deleteIfExists(dir.resolve(files.size() == 1 ? INDEX : SINGLE)), // the other layout's entry point
        () -> {
          if (files.size() > 1) {
            writeIndex(dir, files, names);
          }
        });
  }

  private static void writeIndex(Path dir, List<List<WholeModelWriter.NamedParameter>> files, List<String> names) throws IOException {
    ObjectNode root = JSON.createObjectNode();
    long total = 0;
    Map<String, String> weightMap = new TreeMap<>();
    for (int i = 0; i < files.size(); i++) {
      for (WholeModelWriter.NamedParameter s : files.get(i)) {
        total += s.bytes();
        weightMap.put(s.key(), names.get(i));
      }
    }
    root.putObject("metadata").put("total_size", total);
    ObjectNode map = root.putObject("weight_map");
    weightMap.forEach(map::put);
    Path index = dir.resolve(INDEX);
    Path tmp = index.resolveSibling(INDEX + ".tmp-" + ProcessHandle.current().pid());
    Files.write(tmp, JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(root));
    Files.move(tmp, index, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }
}
