package io.bmtrain4j.nn;

import io.bmtrain4j.zero.SelectiveRecompute;
import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch;

/**
 * Causal attention where groups of query heads share one key/value head (grouped-query attention;
 * multi-head when the counts are equal, multi-query with one key/value head). Each key/value head
 * is repeated for its group, as Hugging Face's {@code repeat_kv}, and libtorch's fused scaled
 * dot-product attention does the rest.
 */
public final class GroupedQueryAttention {
  private GroupedQueryAttention() {}

  /**
   * @param q {@code [batch, heads, seq, headDim]}
   * @param k {@code [batch, kvHeads, seq, headDim]}, {@code heads} a multiple of {@code kvHeads}
   * @param v like {@code k}
   * @return {@code [batch, heads, seq, headDim]}
   */
  public static Tensor causal(Tensor q, Tensor k, Tensor v, double dropout) {
    long heads = q.size(1);
    long kvHeads = k.size(1);
    if (kvHeads <= 0 || heads % kvHeads != 0 || v.size(1) != kvHeads) {
      throw new IllegalArgumentException("grouped-query attention needs a number of query heads (" + heads
          + ") divisible by the number of key/value heads (" + kvHeads + ", values " + v.size(1) + ")");
    }
    long group = heads / kvHeads;
    // The part a selective recompute keeps (see SelectiveRecompute): its time grows with the
    // square of the sequence, what it saves only linearly. The repeated keys and values are its
    // inputs, which a selective recompute makes again rather than keeps.
    return SelectiveRecompute.costly("attention", in -> torch.scaled_dot_product_attention(in[0], in[1], in[2],
        new TensorOptional(), dropout, true, new DoubleOptional(), false), q, repeat(k, group), repeat(v, group));
  }

  /** {@code [b, kvh, t, d]} to {@code [b, kvh * group, t, d]}, each head repeated {@code group} times in place. */
  static Tensor repeat(Tensor kv, long group) {
    if (group == 1) {
      return kv;
    }
    long b = kv.size(0);
    long kvh = kv.size(1);
    long t = kv.size(2);
    long d = kv.size(3);
    return kv.unsqueeze(2).expand(b, kvh, group, t, d).reshape(b, kvh * group, t, d);
  }
}
