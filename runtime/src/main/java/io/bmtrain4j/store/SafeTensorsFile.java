package io.bmtrain4j.store;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.CRC32C;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** A whole map of tensors as one safetensors file: atomic write, and byte-range reads into existing tensors. */
public final class SafeTensorsFile {
  private SafeTensorsFile() {}

  /** Writes {@code tensors} (contiguous copies are taken as needed) under a temporary name, then renames. */
  /** A file's length and CRC-32C, as recorded in a sharded checkpoint's {@code meta.json} and checked on load. */
  public record Digest(long bytes, long crc32c) {
    public String crcHex() {
      return String.format("%08x", crc32c);
    }
  }

  /**
   * Writes {@code tensors} to {@code file} through a temporary file renamed into place, and returns
   * the digest of what was written. A failed write leaves neither file behind.
   */
  public static Digest write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
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
    CRC32C crc = new CRC32C();
    long written = 0;
    try (FileChannel out = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
        StandardOpenOption.WRITE)) {
      byte[] header = SafeTensorsHeader.encode(entries, metadata);
      written += write(out, ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length), crc);
      written += write(out, ByteBuffer.wrap(header), crc);
      for (Tensor t : contiguous.values()) {
        written += writeBytes(out, t, crc);
      }
      out.force(true);
    } catch (IOException | RuntimeException e) {
      Files.deleteIfExists(tmp);
      throw e;
    }
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    return new Digest(written, crc.getValue());
  }

  /** Reads {@code file} through and returns its digest. */
  public static Digest digest(Path file) throws IOException {
    CRC32C crc = new CRC32C();
    long bytes = 0;
    try (FileChannel in = FileChannel.open(file, StandardOpenOption.READ)) {
      ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20);
      int n;
      while ((n = in.read(buf)) != -1) {
        buf.flip();
        crc.update(buf);
        bytes += n;
        buf.clear();
      }
    }
    return new Digest(bytes, crc.getValue());
  }

  private static long write(FileChannel out, ByteBuffer buf, CRC32C crc) throws IOException {
    long n = buf.remaining();
    crc.update(buf.duplicate());
    while (buf.hasRemaining()) {
      out.write(buf);
    }
    return n;
  }

  /** Appends the bytes of {@code t} (contiguous, in host memory) to {@code out}. */
  static void writeBytes(FileChannel out, Tensor t) throws IOException {
    writeBytes(out, t, null);
  }

  /** As {@link #writeBytes(FileChannel, Tensor)}, adding the bytes to {@code crc} (if not null); returns their count. */
  static long writeBytes(FileChannel out, Tensor t, CRC32C crc) throws IOException {
    long bytes = t.numel() * t.element_size();
    if (bytes == 0) {
      return 0;
    }
    try (BytePointer p = new BytePointer(t.data_ptr())) {
      ByteBuffer buf = p.capacity(bytes).asByteBuffer();
      if (crc != null) {
        crc.update(buf.duplicate());
      }
      while (buf.hasRemaining()) {
        out.write(buf);
      }
    }
    return bytes;
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

    /**
     * As {@link #read}, converting from the file's dtype to {@code target}'s when they differ
     * (a bf16 file into an fp32 model, say) through a temporary of the file's dtype.
     */
    public void readConverting(String key, long from, long count, Tensor target) throws IOException {
      SafeTensorsHeader.Entry e = entry(key);
      torch.ScalarType stored = SafeTensorsHeader.scalarType(e.dtype());
      if (stored.value == target.scalar_type().value) {
        read(key, from, count, target);
        return;
      }
      try (Tensor raw = torch.empty(new long[] {count}, new org.bytedeco.pytorch.TensorOptions().dtype(
          new org.bytedeco.pytorch.ScalarTypeOptional(stored)), new org.bytedeco.pytorch.MemoryFormatOptional())) {
        read(key, from, count, raw);
        target.copy_(raw);
      }
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
