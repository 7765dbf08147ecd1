package io.bmtrain4j.dist;

import java.util.Locale;

/** Which library moves the collectives' bytes. */
public enum Backend {
  /** Gloo through libtorch's {@code ProcessGroupGloo}: CPU tensors. */
  GLOO,
  /** NCCL through Bytedeco's CUDA presets: one GPU per rank ({@code LOCAL_RANK}). */
  NCCL;

  /** "gloo" or "nccl", in any case; anything else fails naming the choices. */
  public static Backend parse(String name) {
    for (Backend b : values()) {
      if (b.name().equalsIgnoreCase(name.trim())) {
        return b;
      }
    }
    throw new IllegalArgumentException("backend must be gloo or nccl, got " + name);
  }

  @Override
  public String toString() {
    return name().toLowerCase(Locale.ROOT);
  }
}
