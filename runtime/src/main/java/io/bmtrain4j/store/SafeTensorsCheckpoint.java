package io.bmtrain4j.store;

import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedModuleRuntime;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

/**
 * Whole-model checkpoints in one safetensors file, keyed by field path ({@code layers.3.wq}).
 *
 * <p>Saving streams block by block ({@link WholeModelWriter}): every rank takes part in one block's
 * all-gather at a time and rank 0 appends that block's parameters, so no rank ever holds more than
 * one whole block. The file is written under a temporary name and renamed when complete. Loading needs no communication:
 * every rank reads, from the file, only the byte ranges that fall into its own shards.
 */
public final class SafeTensorsCheckpoint {
  private SafeTensorsCheckpoint() {}

  /**
   * Writes the whole model to {@code file} (a collective: every rank calls it; rank 0 writes). A
   * failure to write fails every rank with the same message; none is left waiting.
   */
  public static void save(ShardedModuleRuntime root, Path file) {
    Path dir = file.toAbsolutePath().getParent();
    WholeModelWriter.write(root, dir, List.of(WholeModelWriter.plan(root, key -> key)), List.of(file.getFileName().toString()),
        Map.of("format", "pt", "writer", "bmtrain4j"), file.toString(), () -> {}, () -> {});
  }

  /**
   * Fills every rank's shards from {@code file}. With {@code strict}, keys in the file that the
   * model lacks are an error too; missing keys, shape and dtype mismatches always are.
   */
  public static void load(ShardedModuleRuntime root, Path file, boolean strict) {
    if (!Files.isRegularFile(file)) {
      throw new CheckpointException("no checkpoint file at " + file);
    }
    List<WholeModelWriter.NamedParameter> params = WholeModelWriter.plan(root, key -> key);
    try (FileChannel in = FileChannel.open(file, StandardOpenOption.READ)) {
      SafeTensorsHeader header = SafeTensorsHeader.read(file, in);
      List<String> missing = new ArrayList<>();
      for (WholeModelWriter.NamedParameter p : params) {
        if (!header.entries().containsKey(p.key())) {
          missing.add(p.key());
        }
      }
      if (!missing.isEmpty()) {
        throw new CheckpointException(file + " lacks " + missing.size() + " parameter(s) of this model: " + missing
            + " (was it saved from another model?)");
      }
      if (strict) {
        List<String> unexpected = new ArrayList<>(header.entries().keySet());
        for (WholeModelWriter.NamedParameter p : params) {
          unexpected.remove(p.key());
        }
        if (!unexpected.isEmpty()) {
          throw new CheckpointException(file + " holds " + unexpected.size() + " key(s) this model does not have: "
              + unexpected + " (load with strict = false to ignore them)");
        }
      }
      for (WholeModelWriter.NamedParameter p : params) {
        SafeTensorsHeader.Entry e = header.entries().get(p.key());
        String dtype = p.dtype();
        if (!Arrays.equals(e.shape(), p.member().shape())) {
          throw new CheckpointException("'" + p.key() + "' in " + file + " has shape " + Arrays.toString(e.shape())
              + " but the model's is " + Arrays.toString(p.member().shape()));
        }
        if (!e.dtype().equals(dtype)) {
          throw new CheckpointException("'" + p.key() + "' in " + file + " is " + e.dtype() + " but the model's is " + dtype);
        }
      }
      for (WholeModelWriter.NamedParameter p : params) {
        readShardPart(in, file, header, p);
        p.member().markInitialised(); // a parameter declared with Bmt.parameter needs no initParameters now
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + file, e);
    }
  }

  /** Copies the part of {@code p} that lies in this rank's shard from the file into the shard. */
  private static void readShardPart(FileChannel in, Path file, SafeTensorsHeader header, WholeModelWriter.NamedParameter p)
      throws IOException {
    ParameterGroup g = p.group();
    io.bmtrain4j.zero.Overlap o = g.layout().overlap(p.member());
    if (o.isEmpty()) {
      return;
    }
    long elem = g.shard().forReading().element_size();
    SafeTensorsHeader.Entry e = header.entries().get(p.key());
    long filePos = header.dataStart() + e.begin() + o.offsetInParameter() * elem;
    try (NoGradGuard ng = new NoGradGuard()) {
      Tensor target = g.shard().forWriting().narrow(0, o.offsetInShard(), o.length());
      Tensor host = Host.staging(target);
      try (BytePointer ptr = new BytePointer(host.data_ptr())) {
        ByteBuffer buf = ptr.capacity(o.length() * elem).asByteBuffer();
        SafeTensorsHeader.readFully(in, buf, filePos, file);
      }
      Host.finish(host, target);
    }
  }
}
