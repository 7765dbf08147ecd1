package io.bmtrain4j.examples.gpt;

import io.bmtrain4j.annotations.Distributed;
import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.LayerNormImpl;
import org.bytedeco.pytorch.LayerNormOptions;
import org.bytedeco.pytorch.LongVector;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch;

/** A pre-norm GPT block: causal self-attention and an MLP, each with a residual connection. */
public class TransformerBlock {
  @Distributed Tensor wqkv;
  @Distributed Tensor wo;
  @Distributed Tensor w1;
  @Distributed Tensor w2;
  @Distributed LayerNormImpl ln1;
  @Distributed LayerNormImpl ln2;

  final int heads;
  final double dropout;
  boolean training = true;

  public TransformerBlock(GptConfig c) {
    double std = 0.02;
    double residualStd = std / Math.sqrt(2.0 * c.layers());
    wqkv = normal(c.dModel(), 3L * c.dModel(), std, c);
    wo = normal(c.dModel(), c.dModel(), residualStd, c);
    w1 = normal(c.dModel(), c.dFf(), std, c);
    w2 = normal(c.dFf(), c.dModel(), residualStd, c);
    ln1 = layerNorm(c);
    ln2 = layerNorm(c);
    heads = c.heads();
    dropout = c.dropout();
  }

  /**
   * Drawn on the config's device from its generator, in the config's dtype. On a GPU this takes
   * milliseconds where drawing on the CPU took 56 s for the 6.7B model, and drawing in the
   * parameter's own dtype leaves no fp32 copy in the caching allocator (fp32 draws left 25 GiB
   * more reserved at 6.7B). A plain and a sharded model built on the same device after the same
   * seed hold the same values. A GPU's generator draws other values than the CPU's, and
   * libtorch's CUDA kernels size their launch by the GPU's SM count, so GPU models differ too:
   * a job's ranks should run on one model of GPU (they draw the same tensors and keep slices).
   */
  static Tensor normal(long rows, long cols, double std, GptConfig c) {
    org.bytedeco.pytorch.TensorOptions options = new org.bytedeco.pytorch.TensorOptions()
        .dtype(new org.bytedeco.pytorch.ScalarTypeOptional(c.dtype()))
        .device(new org.bytedeco.pytorch.DeviceOptional(new org.bytedeco.pytorch.Device(c.device())));
    return torch.randn(new long[] {rows, cols}, options).mul_(new Scalar(std)).requires_grad_(true);
  }

  static LayerNormImpl layerNorm(GptConfig c) {
    LayerNormImpl ln = new LayerNormImpl(new LayerNormOptions(new LongVector(new long[] {c.dModel()})));
    ln.to(new org.bytedeco.pytorch.Device(c.device()), c.dtype(), false);
    return ln;
  }

  /**
   * The attention kernel libtorch picks for this block's query, key and value (views of one
   * projection, as {@link #forward} makes them) at this batch and sequence length.
   */
  public static String attentionBackend(GptConfig c, long batch, long seq) {
    org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope(); // frees the probe
    try {
      Tensor qkv = torch.empty(new long[] {batch, seq, 3, c.heads(), c.dModel() / c.heads()},
          new org.bytedeco.pytorch.TensorOptions().dtype(new org.bytedeco.pytorch.ScalarTypeOptional(c.dtype()))
              .device(new org.bytedeco.pytorch.DeviceOptional(new org.bytedeco.pytorch.Device(c.device()))),
          new org.bytedeco.pytorch.MemoryFormatOptional()).permute(2, 0, 3, 1, 4);
      return io.bmtrain4j.AttentionBackends.chosenFor(qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2), c.dropout());
    } finally {
      scope.close();
    }
  }

  void visitParameters(java.util.function.Consumer<Tensor> visitor) {
    for (Tensor t : new Tensor[] {wqkv, wo, w1, w2, ln1.weight(), ln1.bias(), ln2.weight(), ln2.bias()}) {
      visitor.accept(t);
    }
  }

  public Tensor forward(Tensor x) {
    long b = x.size(0);
    long t = x.size(1);
    long d = x.size(2);
    Tensor qkv = ln1.forward(x).matmul(wqkv).view(b, t, 3, heads, d / heads).permute(2, 0, 3, 1, 4);
    double attentionDropout = training ? dropout : 0.0;
    // Attention is what a selective recompute keeps: its time grows with the square of the sequence.
    Tensor attn = io.bmtrain4j.Bmt.costlyToRecompute("attention", in -> torch.scaled_dot_product_attention(in[0], in[1],
        in[2], new TensorOptional(), attentionDropout, true, new DoubleOptional(), false),
        qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2));
    x = x.add(torch.dropout(attn.transpose(1, 2).reshape(b, t, d).matmul(wo), dropout, training));
    // The output projection's product is read by no backward: a recompute leaves it out.
    Tensor mlp = io.bmtrain4j.Bmt.lastMatmul(torch.gelu(ln2.forward(x).matmul(w1)), w2);
    return x.add(torch.dropout(mlp, dropout, training));
  }
}
