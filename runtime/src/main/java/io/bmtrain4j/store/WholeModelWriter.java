package io.bmtrain4j.store;

import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.dist.DistContext;
import io.bmtrain4j.dist.StoreRound;
import io.bmtrain4j.zero.FlatLayout;
import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedModuleRuntime;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * Whole parameters into safetensors files, for {@link SafeTensorsCheckpoint} (one file) and
 * {@link HuggingFaceCheckpoint} (files at a size limit): every rank takes part in one block's
 * all-gather at a time, so none holds more than one whole block, and rank 0 writes each file
 * under a temporary name, renamed into place when complete.
 *
 * <p>A failure on rank 0 (a full or unwritable disk, a host copy that fails) must not leave the
 * other ranks waiting in the next all-gather: rank 0 stops writing but keeps gathering, and at the end every rank learns the
 * outcome through the job's store ({@link StoreRound}) and fails with the same message.
 */
final class WholeModelWriter {
  private WholeModelWriter() {}

  /** One parameter as a whole-model file holds it: its name there, its place in the model, its size and dtype. */
  record NamedParameter(String key, ParameterGroup group, FlatLayout.Member member, long bytes, String dtype) {}

  /** Rank 0's work around the files, which may fail on I/O. */
  @FunctionalInterface
  interface DiskStep {
    void run() throws IOException;
  }

  /** Every parameter of the tree under {@code root}, named by {@code keyMap}, in model order (for saving and loading). */
  static List<NamedParameter> plan(ShardedModuleRuntime root, Function<String, String> keyMap) {
    List<NamedParameter> saved = new ArrayList<>();
    for (ShardedModuleRuntime r : root.tree()) {
      if (r.group() != null) {
        String dtype = SafeTensorsHeader.dtypeName(r.group().dtype());
        for (FlatLayout.Member m : r.group().members()) {
          saved.add(new NamedParameter(keyMap.apply(r.keyPrefix() + m.name()), r.group(), m,
              m.numel() * SafeTensorsHeader.elementSize(dtype), dtype));
        }
      }
    }
    return saved;
  }

  /**
   * Writes {@code files.get(i)} to {@code dir/names.get(i)} (a collective). Rank 0 runs {@code
   * before} first and {@code after} once every file is in place; a failure in any of them fails
   * every rank, naming {@code what}.
   */
  static void write(ShardedModuleRuntime root, Path dir, List<List<NamedParameter>> files, List<String> names,
      Map<String, String> metadata, String what, DiskStep before, DiskStep after) {
    Communicator comm = root.comm().dataParallel();
    FileSink sink = comm.rank() == 0 ? new FileSink(dir, files, names, metadata, before) : null;
    StoreRound outcome = DistContext.current().storeRound("whole-model-save");
    ParameterGroup gatheredGroup = null;
    Tensor whole = null;
    try (NoGradGuard g = new NoGradGuard()) {
      for (int i = 0; i < files.size(); i++) {
        if (sink != null) {
          sink.open(i);
        }
        for (NamedParameter s : files.get(i)) {
          if (s.group() != gatheredGroup) {
            if (whole != null) {
              whole.close();
            }
            gatheredGroup = s.group();
            Tensor shard = gatheredGroup.shard().forReading();
            whole = torch.empty(new long[] {gatheredGroup.layout().paddedNumel()}, shard.options(), new MemoryFormatOptional());
            comm.allGather(whole, shard).await();
          }
          if (sink != null) {
            sink.write(whole, s.member().offset(), s.member().numel());
          }
        }
        if (sink != null) {
          sink.close(i);
        }
      }
    } finally {
      if (whole != null) {
        whole.close();
      }
    }
    if (sink != null) {
      sink.finish(after);
      outcome.publish(0, sink.failure == null ? "ok" : "error: cannot write " + what + ": " + sink.failure);
    }
    String result = outcome.get(0);
    if (!result.equals("ok")) {
      throw new CheckpointException(result.substring("error: ".length()), sink == null ? null : sink.failure);
    }
  }

  /** Rank 0's files of one save: keeps the first I/O failure and writes nothing after it. */
  private static final class FileSink {
    private final Path dir;
    private final List<List<NamedParameter>> files;
    private final List<String> names;
    private final Map<String, String> metadata;
    private FileChannel out;
    private Path tmp;
    Exception failure; // the first; an I/O error, or a host copy that failed

    FileSink(Path dir, List<List<NamedParameter>> files, List<String> names, Map<String, String> metadata, DiskStep before) {
      this.dir = dir;
      this.files = files;
      this.names = names;
      this.metadata = metadata;
      try {
        Files.createDirectories(dir);
        before.run();
      } catch (IOException | RuntimeException e) {
        failure = e;
      }
    }

    void open(int i) {
      if (failure != null) {
        return;
      }
      Path file = dir.resolve(names.get(i));
      tmp = file.resolveSibling(file.getFileName() + ".tmp-" + ProcessHandle.current().pid());
      try {
        out = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE);
        writeHeader(out, files.get(i), metadata);
      } catch (IOException | RuntimeException e) {
        fail(e);
      }
    }

    /** Elements {@code [offset, offset + numel)} of {@code whole}; the view and the host copy die here. */
    void write(Tensor whole, long offset, long numel) {
      if (failure != null) {
        return;
      }
      try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope()) {
        SafeTensorsFile.writeBytes(out, Host.copy(whole.narrow(0, offset, numel)));
      } catch (IOException | RuntimeException e) {
        fail(e);
      }
    }

    void close(int i) {
      if (failure != null) {
        return;
      }
      try {
        out.force(true);
        out.close();
        out = null;
        Files.move(tmp, dir.resolve(names.get(i)), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      } catch (IOException | RuntimeException e) {
        fail(e);
      }
    }

    void finish(DiskStep after) {
      if (failure == null) {
        try {
          after.run();
        } catch (IOException | RuntimeException e) {
          failure = e;
        }
      }
    }

    private void fail(Exception e) {
      failure = e;
      try {
        if (out != null) {
          out.close();
        }
        Files.deleteIfExists(tmp);
      } catch (IOException ignored) {
        // The first failure is the one to report.
      }
      out = null;
    }
  }

  private static void writeHeader(FileChannel out, List<NamedParameter> tensors, Map<String, String> metadata) throws IOException {
    Map<String, SafeTensorsHeader.Entry> entries = new LinkedHashMap<>();
    long offset = 0;
    for (NamedParameter s : tensors) {
      entries.put(s.key(), new SafeTensorsHeader.Entry(s.dtype(), s.member().shape(), offset, offset + s.bytes()));
      offset += s.bytes();
    }
    byte[] header = SafeTensorsHeader.encode(entries, metadata);
    out.write(ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(0, header.length));
    out.write(ByteBuffer.wrap(header));
  }
}
