package io.bmtrain4j.store;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.global.torch;

/**
 * The header of a safetensors file (the format Hugging Face and PyTorch users exchange): an 8-byte
 * little-endian length, then a JSON object mapping each tensor's name to its dtype, shape and
 * byte range in the data section that follows, plus optional string {@code __metadata__}.
 */
public final class SafeTensorsHeader {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** The format caps headers at 100 MB; a larger length means a corrupt file. */
  private static final long MAX_HEADER = 100L * 1024 * 1024;

  /** One tensor's entry. Offsets are relative to the start of the data section. */
  public record Entry(String dtype, long[] shape, long begin, long end) {
    public long numel() {
      long n = 1;
      for (long d : shape) {
        n *= d;
      }
      return n;
    }
  }

  private final Map<String, Entry> entries;
  private final Map<String, String> metadata;
  private final long dataStart;

  SafeTensorsHeader(Map<String, Entry> entries, Map<String, String> metadata, long dataStart) {
    this.entries = entries;
    this.metadata = metadata;
    this.dataStart = dataStart;
  }

  public Map<String, Entry> entries() {
    return entries;
  }

  public Map<String, String> metadata() {
    return metadata;
  }

  /** Absolute file offset of the data section. */
  public long dataStart() {
    return dataStart;
  }

  /** The dtypes this project reads and writes: safetensors name, libtorch type, bytes per element. */
  private enum Dtype {
    F32(torch.ScalarType.Float, 4),
    F16(torch.ScalarType.Half, 2),
    BF16(torch.ScalarType.BFloat16, 2),
    F64(torch.ScalarType.Double, 8),
    I64(torch.ScalarType.Long, 8),
    I32(torch.ScalarType.Int, 4),
    U8(torch.ScalarType.Byte, 1);

    final torch.ScalarType scalarType;
    final int bytes;

    Dtype(torch.ScalarType scalarType, int bytes) {
      this.scalarType = scalarType;
      this.bytes = bytes;
    }

    static Dtype named(String name) {
      for (Dtype d : values()) {
        if (d.name().equals(name)) {
          return d;
        }
      }
      throw new IllegalArgumentException("unsupported safetensors dtype " + name);
    }
  }

  /** The safetensors name of a libtorch dtype. */
  public static String dtypeName(torch.ScalarType t) {
    for (Dtype d : Dtype.values()) {
      if (d.scalarType.value == t.value) {
        return d.name();
      }
    }
    throw new IllegalArgumentException("dtype " + t + " has no safetensors name here");
  }

  /** The libtorch dtype of a safetensors dtype name (the floating and integer types this project writes). */
  public static torch.ScalarType scalarType(String dtype) {
    return Dtype.named(dtype).scalarType;
  }

  static int elementSize(String dtype) {
    return Dtype.named(dtype).bytes;
  }

  /** Serialises a header for {@code entries} (in order), padded with spaces to 8 bytes as the format recommends. */
  static byte[] encode(Map<String, Entry> entries, Map<String, String> metadata) throws IOException {
    ObjectNode root = JSON.createObjectNode();
    if (!metadata.isEmpty()) {
      ObjectNode meta = root.putObject("__metadata__");
      metadata.forEach(meta::put);
    }
    for (Map.Entry<String, Entry> e : entries.entrySet()) {
      ObjectNode n = root.putObject(e.getKey());
      n.put("dtype", e.getValue().dtype());
      n.putPOJO("shape", e.getValue().shape());
      n.putArray("data_offsets").add(e.getValue().begin()).add(e.getValue().end());
    }
    byte[] json = JSON.writeValueAsBytes(root);
    int padded = (json.length + 7) / 8 * 8;
    byte[] out = Arrays.copyOf(json, padded);
    Arrays.fill(out, json.length, padded, (byte) ' ');
    return out;
  }

  /** Reads and checks the header of {@code file}; errors name the file and what is wrong. */
  public static SafeTensorsHeader read(Path file, FileChannel ch) throws IOException {
    long size = ch.size();
    if (size < 8) {
      throw new CheckpointException(file + " is not a safetensors file: " + size + " bytes, shorter than the header length");
    }
    ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
    readFully(ch, lenBuf, 0, file);
    long n = lenBuf.getLong(0);
    if (n <= 0 || n > MAX_HEADER || 8 + n > size) {
      throw new CheckpointException(file + " is corrupt or truncated: header length " + n + " in a file of " + size + " bytes");
    }
    ByteBuffer headerBuf = ByteBuffer.allocate((int) n);
    readFully(ch, headerBuf, 8, file);
    JsonNode root;
    try {
      root = JSON.readTree(new String(headerBuf.array(), StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new CheckpointException(file + " is corrupt: its header is not JSON (" + e.getMessage() + ")", e);
    }
    Map<String, Entry> entries = new LinkedHashMap<>();
    Map<String, String> metadata = new LinkedHashMap<>();
    long dataSize = size - 8 - n;
    for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext();) {
      Map.Entry<String, JsonNode> f = it.next();
      if (f.getKey().equals("__metadata__")) {
        f.getValue().fields().forEachRemaining(m -> metadata.put(m.getKey(), m.getValue().asText()));
        continue;
      }
      JsonNode v = f.getValue();
      JsonNode shapeNode = v.get("shape");
      JsonNode offsets = v.get("data_offsets");
      if (v.get("dtype") == null || shapeNode == null || offsets == null || offsets.size() != 2) {
        throw new CheckpointException(file + " is corrupt: entry '" + f.getKey() + "' lacks dtype, shape or data_offsets");
      }
      long[] shape = new long[shapeNode.size()];
      for (int i = 0; i < shape.length; i++) {
        shape[i] = shapeNode.get(i).asLong();
      }
      Entry e = new Entry(v.get("dtype").asText(), shape, offsets.get(0).asLong(), offsets.get(1).asLong());
      long expected = e.numel() * elementSize(e.dtype());
      if (e.end() - e.begin() != expected || e.begin() < 0 || e.end() > dataSize) {
        throw new CheckpointException(file + " is corrupt or truncated: entry '" + f.getKey() + "' spans bytes ["
            + e.begin() + ", " + e.end() + ") of a data section of " + dataSize + " bytes (expected " + expected + " bytes)");
      }
      entries.put(f.getKey(), e);
    }
    return new SafeTensorsHeader(entries, metadata, 8 + n);
  }

  static void readFully(FileChannel ch, ByteBuffer buf, long position, Path file) throws IOException {
    long pos = position;
    while (buf.hasRemaining()) {
      int r = ch.read(buf, pos);
      if (r < 0) {
        throw new CheckpointException(file + " is truncated: it ends at byte " + pos);
      }
      pos += r;
    }
  }
}
