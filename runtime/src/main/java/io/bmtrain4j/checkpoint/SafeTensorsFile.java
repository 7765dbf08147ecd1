package io.bmtrain4j.checkpoint;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.pytorch.Tensor;

/** A whole map of tensors as one safetensors file: atomic write, and byte-range reads into existing tensors. */
public final class SafeTensorsFile {
  private SafeTensorsFile() {}

  /** Writes {@code tensors} (contiguous copies are taken as needed) under a temporary name, then renames. */
  public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
    Map<String, SafeTensorsHeader.Entry> entries = new LinkedHashMap<>();
    Map<String, Tensor> contiguous = new LinkedHashMap<>();
    long offset = 0;
    for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
      Tensor t = Host.copy(e.getValue());
      String dtype = SafeTensorsHeader.dtypeName(t.scalar_type());
      long bytes = t.numel() * t.element_size();
      entries.put(e.getKey(), new SafeTensorsHeader.Entry(dtype, t.sizes().vec().get(), offset, offset + bytes));
      contiguous.put(e.getKey(), t);
      offset += bytes;
    }
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    try (FileChannel out = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
        StandardOpenOption.WRITE)) {
      byte[] header = SafeTensorsHeader.encode(entries, metadata);
      out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length));
      out.write(ByteBuffer.wrap(header));
      for (Tensor t : contiguous.values()) {
        writeBytes(out, t);
      }
      out.force(true);
    }
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** Appends the bytes of {@code t} (contiguous, in host memory) to {@code out}. */
  static void writeBytes(FileChannel out, Tensor t) throws IOException {
    long bytes = t.numel() * t.element_size();
    if (bytes == 0) {
      return;
    }
    try (BytePointer p = new BytePointer(t.data_ptr())) {
      ByteBuffer buf = p.capacity(bytes).asByteBuffer();
      while (buf.hasRemaining()) {
        out.write(buf);
      }
    }
  }

  /** An open file: its header and channel, for reading element ranges of its tensors. */
  public static final class Reader implements AutoCloseable {
    private final Path file;
    private final FileChannel channel;
    private final SafeTensorsHeader header;

    public Reader(Path file) throws IOException {
      if (!Files.isRegularFile(file)) {
        throw new CheckpointException("checkpoint file " + file + " is missing");
      }
      this.file = file;
      this.channel = FileChannel.open(file, StandardOpenOption.READ);
      this.header = SafeTensorsHeader.read(file, channel);
    }

    public SafeTensorsHeader header() {
      return header;
    }

    public SafeTensorsHeader.Entry entry(String key) {
      SafeTensorsHeader.Entry e = header.entries().get(key);
      if (e == null) {
        throw new CheckpointException(file + " has no entry '" + key + "': the checkpoint is incomplete or from another model");
      }
      return e;
    }

    /** Copies {@code count} elements of {@code key}, from element {@code from}, into {@code target} (contiguous). */
    public void read(String key, long from, long count, Tensor target) throws IOException {
      SafeTensorsHeader.Entry e = entry(key);
      long elem = target.element_size();
      if ((from + count) * elem > e.end() - e.begin()) {
        throw new CheckpointException(file + ": entry '" + key + "' is shorter than expected");
      }
      Tensor host = Host.staging(target);
      try (BytePointer p = new BytePointer(host.data_ptr())) {
        ByteBuffer buf = p.capacity(count * elem).asByteBuffer();
        SafeTensorsHeader.readFully(channel, buf, header.dataStart() + e.begin() + from * elem, file);
      }
      Host.finish(host, target);
    }

    @Override
    public void close() throws IOException {
      channel.close();
    }
  }
}
