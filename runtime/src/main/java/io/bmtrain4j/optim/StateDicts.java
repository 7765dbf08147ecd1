package io.bmtrain4j.optim;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.InputArchive;
import org.bytedeco.pytorch.OutputArchive;
import org.bytedeco.pytorch.StringVector;
import org.bytedeco.pytorch.Tensor;

/** State dicts (ordered maps of tensors): lookup with clear errors, and files in libtorch's archive format. */
public final class StateDicts {
  private StateDicts() {}

  /** The entry {@code key}, checked to have {@code shape}; the error names the key and says what was expected. */
  public static Tensor require(Map<String, Tensor> state, String key, long[] shape) {
    Tensor t = state.get(key);
    if (t == null) {
      throw new IllegalArgumentException("state dict has no entry '" + key
          + "': it was saved from a different model, optimizer or world size (it has "
          + state.size() + " entries" + (state.isEmpty() ? "" : ", such as '" + state.keySet().iterator().next() + "'") + ")");
    }
    long[] got = t.sizes().vec().get();
    if (!Arrays.equals(got, shape)) {
      throw new IllegalArgumentException("state dict entry '" + key + "' has shape " + Arrays.toString(got)
          + " but this model expects " + Arrays.toString(shape) + ": it was saved from a different model or world size");
    }
    return t;
  }

  /** Prefixes every key (to nest one state dict in another). */
  public static Map<String, Tensor> prefixed(String prefix, Map<String, Tensor> state) {
    Map<String, Tensor> out = new LinkedHashMap<>();
    state.forEach((k, v) -> out.put(prefix + k, v));
    return out;
  }

  /** The entries under {@code prefix}, with the prefix removed. */
  public static Map<String, Tensor> under(String prefix, Map<String, Tensor> state) {
    Map<String, Tensor> out = new LinkedHashMap<>();
    state.forEach((k, v) -> {
      if (k.startsWith(prefix)) {
        out.put(k.substring(prefix.length()), v);
      }
    });
    return out;
  }

  /** Writes {@code state} atomically (temporary file, then rename). */
  public static void save(Map<String, Tensor> state, Path file) throws IOException {
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    try (OutputArchive archive = new OutputArchive()) {
      for (Map.Entry<String, Tensor> e : state.entrySet()) {
        archive.write(e.getKey(), e.getValue().detach().contiguous());
      }
      archive.save_to(tmp.toString());
    }
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  public static Map<String, Tensor> load(Path file) {
    if (!Files.isRegularFile(file)) {
      throw new IllegalArgumentException("no state file at " + file);
    }
    Map<String, Tensor> out = new LinkedHashMap<>();
    try (InputArchive archive = new InputArchive()) {
      archive.load_from(file.toString());
      StringVector keys = archive.keys();
      for (long i = 0; i < keys.size(); i++) {
        String k = keys.get(i).getString();
        Tensor t = new Tensor();
        archive.read(k, t);
        out.put(k, t);
      }
    } catch (RuntimeException e) {
      throw new IllegalArgumentException("cannot read state file " + file + " (corrupt or truncated?): "
          + String.valueOf(e.getMessage()).lines().findFirst().orElse(""), e);
    }
    return out;
  }
}
