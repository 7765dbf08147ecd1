package io.bmtrain4j.store;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.optim.OptimManager;
import io.bmtrain4j.zero.FlatLayout;
import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedModules;
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
 * state) to {@code rank-R.safetensors}; rank 0 adds the world-independent state (step counts,
 * loss scale, scheduler, generator) and, last, {@code meta.json} with the world size, every
 * rank's slice of every parameter and every file's CRC-32C. All of it is written in
 * {@code step-N.partial/}, renamed to {@code step-N/} when complete; then {@code latest} is
 * switched atomically to {@code step-N} (see [Note: checkpoint save]). A crash at any point
 * leaves the previous checkpoint what {@code latest} names.
 *
 * <p>Loading at any world size reshards without gathering: each rank reads, from the old ranks'
 * files, exactly the element ranges that make up its new slices.
 */
public final class ShardedCheckpoint {
  private static final ObjectMapper JSON = new ObjectMapper();
  private ShardedCheckpoint() {}

  /** The name {@code latest} may hold: a step directory directly under the checkpoint directory. */
  private static final java.util.regex.Pattern STEP_DIR = java.util.regex.Pattern.compile("step-\\d{9,}");

  /** Saves model and manager (may be null) as checkpoint {@code step} under {@code dir}, keeping all earlier ones. A collective. */
  public static void save(Path dir, Object model, OptimManager manager, long step) {
    save(dir, model, manager, step, 0);
  }

  /**
   * Saves model and manager (may be null) as checkpoint {@code step} under {@code dir}; a collective.
   *
   * <p>[Note: checkpoint save] Every rank writes its file into {@code step-N.partial/}, never
   * into a directory {@code latest} may name, and sends rank 0 its file's length and CRC-32C
   * through the store (or the error that stopped it). Rank 0 writes {@code meta.json} with those
   * digests, renames the directory to {@code step-N} (moving an older {@code step-N} aside
   * first), switches {@code latest}, and tells every rank how it went, so all ranks return or
   * fail together, naming the problem. Only then does rank 0 prune: what interrupted saves left,
   * and, if {@code keepLast > 0}, complete checkpoints older than this one beyond the newest
   * {@code keepLast} (never newer ones, which a resume from an earlier step may have left; a
   * pruning failure is only a warning).
   */
  public static void save(Path dir, Object model, OptimManager manager, long step, int keepLast) {
    awaitPendingSave();
    prepare(dir, model, manager, step, keepLast, false).write();
  }

  /**
   * As {@link #save(Path, Object, OptimManager, long, int)}, but returns once this rank's part
   * is copied to host memory (pinned when it comes from a GPU): the files are written on a
   * background thread while training goes on. The next save, or {@link #awaitPendingSave()}
   * (call it before the process ends), waits for it and reports its failure. A crash during
   * the write leaves the previous checkpoint what {@code latest} names, as with a blocking save.
   */
  public static PendingSave saveAsync(Path dir, Object model, OptimManager manager, long step, int keepLast) {
    awaitPendingSave();
    Write write = prepare(dir, model, manager, step, keepLast, true);
    PendingSave pending = new PendingSave(write);
    PENDING.set(pending);
    return pending;
  }

  /**
   * The host copies of the last asynchronous save, reused by the next one of the same shapes:
   * allocating pinned memory for a 1.5B model's 21 GB took 12.8 s of the first save on an H200,
   * copying into it about a second. Held for the life of the thread (the rank), as large as its
   * part of a checkpoint.
   */
  private static final ThreadLocal<Map<String, Tensor>> HOST_COPIES =
      ThreadLocal.withInitial(java.util.concurrent.ConcurrentHashMap::new);

  /** The asynchronous save of this thread's job still being written, if any (one at a time). */
  private static final InheritableThreadLocal<PendingSave> PENDING = new InheritableThreadLocal<>();

  /** Waits for the asynchronous save still being written, if any; rethrows its failure. */
  public static void awaitPendingSave() {
    PendingSave p = PENDING.get();
    if (p != null) {
      p.await(); // forgets it once its writer has ended: its host buffers are free again only then
    }
  }

  /** An asynchronous save in flight: {@link #await()} waits for it and rethrows what stopped it. */
  public static final class PendingSave {
    private final Thread writer;
    private volatile RuntimeException failure;

    private PendingSave(Write write) {
      this.writer = new Thread(() -> {
        try {
          write.write();
        } catch (Throwable e) { // an Error too: the waiting rank must learn that the save did not happen
          failure = e instanceof RuntimeException ? (RuntimeException) e
              : new CheckpointException("writing " + write.stepDir + " failed: " + e, e);
        }
      }, "checkpoint-writer-" + write.stepDir.getFileName());
      writer.start();
    }

    public boolean isDone() {
      return !writer.isAlive();
    }

    public void await() {
      try {
        writer.join();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while waiting for the checkpoint to be written", e);
      }
      if (PENDING.get() == this) {
        PENDING.remove();
      }
      if (failure != null) {
        throw failure;
      }
    }
  }

  /**
   * What one rank writes for one save, taken on the training thread: its tensors (copies when
   * the write happens later, since training goes on changing them), the layout for
   * {@code meta.json}, and the store rounds, opened in the same order on every rank. The write
   * itself uses only the store, never a collective, so it may run beside training's collectives.
   */
  private static final class Write {
    final Path dir;
    final Path stepDir;
    final Path staging;
    final String name;
    final long step;
    final int keepLast;
    final int rank;
    final int world;
    final Map<String, Tensor> tensors;
    final ObjectNode parameters;
    final io.bmtrain4j.dist.StoreRound ready;
    final io.bmtrain4j.dist.StoreRound digests;
    final io.bmtrain4j.dist.StoreRound status;

    Write(Path dir, long step, int keepLast, int rank, int world, Map<String, Tensor> tensors, ObjectNode parameters,
        io.bmtrain4j.dist.DistContext ctx) {
      this.dir = dir;
      this.step = step;
      this.keepLast = keepLast;
      this.name = String.format("step-%09d", step);
      this.stepDir = dir.resolve(name);
      this.staging = dir.resolve(name + ".partial");
      this.rank = rank;
      this.world = world;
      this.tensors = tensors;
      this.parameters = parameters;
      this.ready = ctx.storeRound("checkpoint-ready");
      this.digests = ctx.storeRound("checkpoint-digest");
      this.status = ctx.storeRound("checkpoint-status");
    }

    void write() {
      if (rank == 0) {
        try {
          deleteTree(staging); // a save that crashed here before
          Files.createDirectories(staging);
          ready.publish(0, "ok");
        } catch (IOException e) {
          ready.publish(0, "error: cannot prepare " + staging + ": " + e);
          throw new UncheckedIOException("cannot prepare " + staging, e);
        }
      } else {
        String prepared = ready.get(0); // the staging directory is fresh before anyone writes into it
        if (!prepared.equals("ok")) {
          throw new CheckpointException(prepared.substring("error: ".length()));
        }
      }
      try (NoGradGuard g = new NoGradGuard()) {
        SafeTensorsFile.Digest d = SafeTensorsFile.write(staging.resolve(rankFile(rank)), tensors,
            Map.of("rank", String.valueOf(rank), "world_size", String.valueOf(world)));
        digests.publish(rank, d.bytes() + " " + d.crcHex());
      } catch (IOException | RuntimeException e) {
        digests.publish(rank, "error: " + e.getMessage());
        if (rank != 0) {
          throw unchecked(e, stepDir);
        }
      }
      if (rank == 0) {
        try {
          List<String> all = new ArrayList<>();
          for (int q = 0; q < world; q++) {
            String v = digests.get(q);
            if (v.startsWith("error: ")) {
              throw new CheckpointException("rank " + q + " could not write its part of " + stepDir + ": " + v.substring(7));
            }
            all.add(v);
          }
          writeMeta(staging, parameters, world, step, all);
          moveIntoPlace(staging, stepDir);
          writeDurably(dir.resolve("latest"), name.getBytes(StandardCharsets.UTF_8));
        } catch (IOException | RuntimeException e) {
          status.publish(0, "error: " + (e instanceof CheckpointException ? e.getMessage() : "cannot write checkpoint " + stepDir + ": " + e));
          throw unchecked(e, stepDir);
        }
        status.publish(0, "ok");
        try {
          prune(dir, step, keepLast);
        } catch (IOException | RuntimeException e) {
          System.err.println("warning: checkpoint " + stepDir + " is saved, but pruning older ones failed: " + e);
        }
      } else {
        String outcome = status.get(0);
        if (!outcome.equals("ok")) {
          throw new CheckpointException(outcome.substring("error: ".length()));
        }
      }
    }
  }

  /** Everything a save needs from the model and the manager, taken now (copied to host memory when {@code copy}). */
  private static Write prepare(Path dir, Object model, OptimManager manager, long step, int keepLast, boolean copy) {
    if (step < 0 || keepLast < 0) {
      throw new IllegalArgumentException("step and keepLast must be 0 or more, got " + step + " and " + keepLast);
    }
    io.bmtrain4j.dist.DistContext ctx = io.bmtrain4j.dist.DistContext.current();
    Communicator comm = ctx.communicator();
    int rank = comm.rank();
    Map<String, Tensor> mine = new LinkedHashMap<>();
    List<ShardedParameter> params = ShardedModules.parameters(model);
    for (ShardedParameter p : params) {
      mine.put("model/" + p.name(), p.readLocal());
    }
    if (manager != null) {
      Map<String, Tensor> train = manager.stateDict();
      Map<String, ShardedParameter> perElement = perElementKeys(manager, params);
      for (Map.Entry<String, Tensor> e : train.entrySet()) {
        if (perElement.containsKey(e.getKey()) || rank == 0) {
          mine.put("train/" + e.getKey(), e.getValue());
        }
      }
    }
    if (copy) {
      Map<String, Tensor> buffers = HOST_COPIES.get();
      try (NoGradGuard g = new NoGradGuard()) {
        mine.replaceAll((k, t) -> Host.snapshotInto(buffers, k, t));
      }
    }
    return new Write(dir, step, keepLast, rank, comm.worldSize(), mine, parameterLayout(model, comm.worldSize()), ctx);
  }

  private static RuntimeException unchecked(Exception e, Path stepDir) {
    return e instanceof IOException ? new UncheckedIOException("cannot write checkpoint " + stepDir, (IOException) e)
        : (RuntimeException) e;
  }

  /** Renames the finished {@code staging} directory to {@code stepDir}, moving an existing one aside first. */
  private static void moveIntoPlace(Path staging, Path stepDir) throws IOException {
    Path aside = null;
    if (Files.exists(stepDir)) {
      aside = stepDir.resolveSibling(stepDir.getFileName() + ".replaced-" + ProcessHandle.current().pid());
      Files.move(stepDir, aside, StandardCopyOption.ATOMIC_MOVE);
    }
    Files.move(staging, stepDir, StandardCopyOption.ATOMIC_MOVE);
    syncDirectory(stepDir.getParent());
    if (aside != null) {
      deleteTree(aside);
    }
  }

  /** Every parameter's shape, dtype and every rank's slice, for {@code meta.json}. */
  private static ObjectNode parameterLayout(Object model, int world) {
    ObjectNode ps = JSON.createObjectNode();
    for (io.bmtrain4j.zero.ShardedModuleRuntime r : ShardedModules.runtimeOf(model).tree()) {
      ParameterGroup g = r.group();
      if (g == null) {
        continue;
      }
      for (FlatLayout.Member m : g.members()) {
        ObjectNode n = ps.putObject(r.keyPrefix() + m.name());
        n.putPOJO("shape", m.shape());
        n.put("dtype", SafeTensorsHeader.dtypeName(g.dtype()));
        ArrayNode slices = n.putArray("slices");
        for (int q = 0; q < world; q++) {
          io.bmtrain4j.zero.Overlap s = g.layout().overlap(m, q);
          slices.addArray().add(s.offsetInParameter()).add(s.length());
        }
      }
    }
    return ps;
  }

  private static void writeMeta(Path stepDir, ObjectNode parameters, int world, long step, List<String> digests) throws IOException {
    ObjectNode root = JSON.createObjectNode();
    root.put("format", "bmtrain4j-sharded-1");
    root.put("world_size", world);
    root.put("step", step);
    root.set("parameters", parameters);
    ObjectNode files = root.putObject("files");
    for (int q = 0; q < world; q++) {
      String[] d = digests.get(q).trim().split(" ");
      files.putObject(rankFile(q)).put("bytes", Long.parseLong(d[0])).put("crc32c", d[1]);
    }
    writeDurably(stepDir.resolve("meta.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(root));
  }

  private static String rankFile(int rank) {
    return "rank-" + rank + ".safetensors";
  }

  /**
   * Writes {@code bytes} to {@code file} as one atomic step that survives a power cut: a temporary
   * file, fsynced, renamed over {@code file}, then the directory fsynced so the rename is on disk.
   * A failure removes the temporary file.
   */
  private static void writeDurably(Path file, byte[] bytes) throws IOException {
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    try (java.nio.channels.FileChannel out = java.nio.channels.FileChannel.open(tmp, java.nio.file.StandardOpenOption.CREATE,
        java.nio.file.StandardOpenOption.TRUNCATE_EXISTING, java.nio.file.StandardOpenOption.WRITE)) {
      java.nio.ByteBuffer buf = java.nio.ByteBuffer.wrap(bytes);
      while (buf.hasRemaining()) {
        out.write(buf);
      }
      out.force(true);
    } catch (IOException e) {
      Files.deleteIfExists(tmp);
      throw e;
    }
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    syncDirectory(file.toAbsolutePath().getParent());
  }

  /** Makes renames in {@code dir} durable. */
  private static void syncDirectory(Path dir) {
    try (java.nio.channels.FileChannel d = java.nio.channels.FileChannel.open(dir.toAbsolutePath(),
        java.nio.file.StandardOpenOption.READ)) {
      d.force(true);
    } catch (IOException e) {
      // Some file systems cannot sync a directory; the rename itself is still atomic.
    }
  }

  /** What interrupted saves left, and older checkpoints beyond {@code keepLast}; see [Note: checkpoint save]. */
  private static void prune(Path dir, long current, int keepLast) throws IOException {
    List<Path> older = new ArrayList<>();
    try (java.util.stream.Stream<Path> entries = Files.list(dir)) {
      for (Path p : (Iterable<Path>) entries.sorted()::iterator) {
        String n = p.getFileName().toString();
        if (!Files.isDirectory(p) || !n.startsWith("step-")) {
          continue;
        }
        if (n.contains(".partial") || n.contains(".replaced-") || (STEP_DIR.matcher(n).matches()
            && !Files.isRegularFile(p.resolve("meta.json")))) {
          deleteTree(p); // a save that never finished
        } else if (STEP_DIR.matcher(n).matches() && Long.parseLong(n.substring(5)) < current) {
          older.add(p); // complete, older than this save; names sort by step (zero-padded)
        }
      }
    }
    if (keepLast > 0) {
      for (int i = 0; i < older.size() - (keepLast - 1); i++) {
        deleteTree(older.get(i));
      }
    }
  }

  private static void deleteTree(Path p) throws IOException {
    if (!Files.exists(p)) {
      return;
    }
    try (java.util.stream.Stream<Path> walk = Files.walk(p)) {
      for (Path f : (Iterable<Path>) walk.sorted(java.util.Comparator.reverseOrder())::iterator) {
        Files.deleteIfExists(f);
      }
    }
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
    try {
      Path stepDir = latestStepDirectory(dir);
      Path metaFile = stepDir.resolve("meta.json");
      JsonNode meta = readMeta(stepDir);
      int oldWorld = meta.get("world_size").asInt();
      try (RankFiles readers = new RankFiles(stepDir, meta, oldWorld)) {
        List<ShardedParameter> params = ShardedModules.parameters(model);
        JsonNode ps = meta.get("parameters");
        try (NoGradGuard g = new NoGradGuard()) {
          for (ShardedParameter p : params) {
            // Scoped: slice views would otherwise keep shards' storage past a later free.
            try (org.bytedeco.javacpp.PointerScope paramScope = new org.bytedeco.javacpp.PointerScope()) {
              JsonNode pm = ps.get(p.name());
              if (pm == null) {
                throw new CheckpointException(metaFile + " has no parameter '" + p.name() + "' (saved from another model?)");
              }
              long[] shape = JSON.convertValue(pm.get("shape"), long[].class);
              if (!java.util.Arrays.equals(shape, p.shape())) {
                throw new CheckpointException("'" + p.name() + "' in " + metaFile + " has shape " + java.util.Arrays.toString(shape)
                    + " but the model's is " + java.util.Arrays.toString(p.shape()));
              }
              String savedType = pm.path("dtype").asText("");
              String modelType = SafeTensorsHeader.dtypeName(p.local().scalar_type());
              if (!savedType.isEmpty() && !savedType.equals(modelType)) {
                throw new CheckpointException("the checkpoint in " + stepDir + " was saved as " + savedType + " and the model is "
                    + modelType + " ('" + p.name() + "'): resume with the dtype it was saved with (a change of dtype on resume"
                    + " is not supported)");
              }
              gather(readers, pm.get("slices"), "model/" + p.name(), p.offsetInParameter(), p.local());
              p.markLoaded(); // a parameter declared with Bmt.parameter needs no initParameters now
              boolean finite;
              try (Tensor isFinite = torch.isfinite(p.local()); Tensor all = isFinite.all()) {
                finite = all.item_bool();
              }
              if (!finite) {
                throw new CheckpointException("'" + p.name() + "' in " + stepDir + " holds NaN or infinite values: the run that"
                    + " saved it had diverged. Resume from an earlier checkpoint: write its directory name (step-...) into "
                    + dir.resolve("latest"));
              }
            }
          }
          if (manager != null) {
            Map<String, Tensor> wanted = manager.stateDict();
            Map<String, ShardedParameter> perElement = perElementKeys(manager, params);
            Map<String, Tensor> state = new LinkedHashMap<>();
            for (Map.Entry<String, Tensor> e : wanted.entrySet()) {
              String key = e.getKey();
              ShardedParameter owner = perElement.get(key);
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
      }
      return meta.get("step").asLong();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read checkpoint in " + dir, e);
    }
  }

  /** The step of the checkpoint {@code latest} names in {@code dir}, read from its validated {@code meta.json}. */
  public static long step(Path dir) {
    try {
      return readMeta(latestStepDirectory(dir)).get("step").asLong();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read checkpoint in " + dir, e);
    }
  }

  /** The step directory {@code latest} names, which must be one directly inside {@code dir}. */
  private static Path latestStepDirectory(Path dir) throws IOException {
    Path latest = dir.resolve("latest");
    if (!Files.isRegularFile(latest)) {
      throw new CheckpointException("no checkpoint in " + dir + " (no 'latest' file)");
    }
    String name = Files.readString(latest, StandardCharsets.UTF_8).trim();
    if (name.isEmpty()) {
      throw new CheckpointException(latest + " is empty: write the name of a step directory (step-...) of " + dir + " into it");
    }
    if (!STEP_DIR.matcher(name).matches()) {
      throw new CheckpointException(latest + " names '" + name + "', which is not a step directory (step-NNNNNNNNN) of " + dir);
    }
    Path stepDir = dir.resolve(name);
    if (!Files.isDirectory(stepDir)) {
      throw new CheckpointException(latest + " names " + name + ", which is not in " + dir);
    }
    if (!Files.isRegularFile(stepDir.resolve("meta.json"))) {
      throw new CheckpointException(stepDir + " has no meta.json: the checkpoint is incomplete");
    }
    return stepDir;
  }

  /** {@code meta.json} of {@code stepDir}, with every field the loader relies on checked. */
  private static JsonNode readMeta(Path stepDir) {
    Path metaFile = stepDir.resolve("meta.json");
    JsonNode meta;
    try {
      meta = JSON.readTree(metaFile.toFile());
    } catch (IOException e) {
      throw new CheckpointException(metaFile + " is corrupt: " + e.getMessage(), e);
    }
    if (meta == null || !meta.isObject()) {
      throw new CheckpointException(metaFile + " is not a JSON object: the checkpoint is corrupt");
    }
    requireField(meta, metaFile, "world_size", meta.path("world_size").canConvertToInt() && meta.path("world_size").isIntegralNumber()
        && meta.path("world_size").asInt() >= 1, "a whole number of at least 1");
    requireField(meta, metaFile, "step", meta.path("step").isIntegralNumber() && meta.path("step").asLong() >= 0,
        "a whole number of at least 0");
    requireField(meta, metaFile, "parameters", meta.path("parameters").isObject(), "an object");
    int world = meta.get("world_size").asInt();
    for (java.util.Iterator<Map.Entry<String, JsonNode>> it = meta.get("parameters").fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      JsonNode shape = e.getValue().path("shape");
      JsonNode slices = e.getValue().path("slices");
      boolean shapeOk = shape.isArray();
      for (JsonNode d : shape) {
        shapeOk &= d.isIntegralNumber() && d.asLong() >= 0;
      }
      boolean slicesOk = slices.isArray() && slices.size() == world;
      for (JsonNode sl : slices) {
        slicesOk &= sl.isArray() && sl.size() == 2 && sl.get(0).isIntegralNumber() && sl.get(1).isIntegralNumber()
            && sl.get(0).asLong() >= 0 && sl.get(1).asLong() >= 0;
      }
      if (!shapeOk || !slicesOk) {
        throw new CheckpointException(metaFile + ": parameter '" + e.getKey() + "' needs a 'shape' of sizes and 'slices' of "
            + world + " [offset, length] pairs (one per saving rank), but has " + e.getValue() + ": the checkpoint is corrupt");
      }
    }
    return meta;
  }

  private static void requireField(JsonNode meta, Path metaFile, String field, boolean ok, String expected) {
    if (!ok) {
      JsonNode v = meta.get(field);
      throw new CheckpointException(metaFile + ": '" + field + "' must be " + expected + ", but it is "
          + (v == null ? "missing" : v.toString()) + ": the checkpoint is corrupt");
    }
  }

  /**
   * The saving ranks' files, opened and checked against {@code meta.json}'s checksums on first
   * use: a rank reads (and verifies) only the files its new slices overlap.
   */
  private static final class RankFiles implements AutoCloseable {
    private final Path stepDir;
    private final JsonNode meta;
    private final SafeTensorsFile.Reader[] open;

    RankFiles(Path stepDir, JsonNode meta, int world) {
      this.stepDir = stepDir;
      this.meta = meta;
      this.open = new SafeTensorsFile.Reader[world];
    }

    int size() {
      return open.length;
    }

    SafeTensorsFile.Reader get(int rank) throws IOException {
      if (open[rank] == null) {
        Path file = stepDir.resolve(rankFile(rank));
        verify(meta, stepDir.resolve("meta.json"), file);
        open[rank] = new SafeTensorsFile.Reader(file);
      }
      return open[rank];
    }

    @Override
    public void close() throws IOException {
      for (SafeTensorsFile.Reader r : open) {
        if (r != null) {
          r.close();
        }
      }
    }
  }

  /** Checks {@code file} against the length and CRC-32C that {@code meta.json} recorded for it (older checkpoints have none). */
  private static void verify(JsonNode meta, Path metaFile, Path file) throws IOException {
    JsonNode expected = meta.path("files").path(file.getFileName().toString());
    if (expected.isMissingNode()) {
      if (meta.has("files")) {
        throw new CheckpointException(metaFile + " records no checksum for " + file.getFileName() + ": the checkpoint is corrupt");
      }
      return;
    }
    if (!Files.isRegularFile(file)) {
      throw new CheckpointException(file + " is missing: the checkpoint is incomplete");
    }
    SafeTensorsFile.Digest d = SafeTensorsFile.digest(file);
    if (d.bytes() != expected.path("bytes").asLong(-1) || !d.crcHex().equals(expected.path("crc32c").asText())) {
      throw new CheckpointException(file + " does not match the checksum in " + metaFile + " (" + d.bytes() + " bytes, CRC-32C "
          + d.crcHex() + "; recorded " + expected.path("bytes").asText() + " bytes, " + expected.path("crc32c").asText()
          + "): the file is truncated or corrupt. Resume from an earlier checkpoint: write its directory name (step-...) into "
          + metaFile.getParent().getParent().resolve("latest"));
    }
  }

  /**
   * The manager's state keys that hold one value per slice element (as its optimizers declare
   * them), each with the model's parameter of that name: saved by every rank, resliced on load.
   * {@code meta.json} describes the model's parameters only, so state of any other parameter is
   * kept whole, by rank 0, like the world-independent state.
   */
  private static Map<String, ShardedParameter> perElementKeys(OptimManager manager, List<ShardedParameter> params) {
    Map<String, ShardedParameter> modelByName = new LinkedHashMap<>();
    params.forEach(p -> modelByName.put(p.name(), p));
    Map<String, ShardedParameter> out = new LinkedHashMap<>();
    manager.perElementKeys().forEach((key, parameter) -> {
      ShardedParameter inModel = modelByName.get(parameter.name());
      if (inModel != null) {
        out.put(key, inModel);
      }
    });
    return out;
  }

  /**
   * Fills {@code target} (this rank's new slice, starting at {@code begin} of the flattened
   * parameter) from the old ranks' slices that overlap it.
   */
  private static void gather(RankFiles readers, JsonNode slices, String key, long begin, Tensor target)
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
