package io.bmtrain4j.examples.llama;

import io.bmtrain4j.annotations.Distributed;
import io.bmtrain4j.init.Initializer;
import io.bmtrain4j.nn.GroupedQueryAttention;
import io.bmtrain4j.nn.Linear;
import io.bmtrain4j.nn.RmsNorm;
import io.bmtrain4j.nn.RotaryEmbedding;
import io.bmtrain4j.nn.SwiGlu;
import org.bytedeco.pytorch.Tensor;

/**
 * A pre-norm LLaMA block: RMSNorm, grouped-query attention with rotary embeddings, RMSNorm, SwiGLU,
 * each with a residual connection. Weights are stored {@code [out, in]}, as in Hugging Face
 * checkpoints, whose names map one to one onto these fields ({@link HuggingFaceLlama}).
 */
public class LlamaBlock {
  @Distributed Tensor attnNorm;
  @Distributed Tensor wq;
  @Distributed Tensor wk;
  @Distributed Tensor wv;
  @Distributed Tensor wo;
  @Distributed Tensor mlpNorm;
  @Distributed Tensor wGate;
  @Distributed Tensor wUp;
  @Distributed Tensor wDown;

  final int heads;
  final int kvHeads;
  final double eps;

  public LlamaBlock(LlamaConfig c) {
    long d = c.dModel();
    long kv = (long) c.kvHeads() * c.headDim();
    Initializer normal = Initializer.normal(0.02);
    Initializer residual = Initializer.normal(0.02 / Math.sqrt(2.0 * c.layers()));
    attnNorm = Llama.parameter(c, Initializer.ones(), d);
    wq = Llama.parameter(c, normal, d, d);
    wk = Llama.parameter(c, normal, kv, d);
    wv = Llama.parameter(c, normal, kv, d);
    wo = Llama.parameter(c, residual, d, d);
    mlpNorm = Llama.parameter(c, Initializer.ones(), d);
    wGate = Llama.parameter(c, normal, c.dFf(), d);
    wUp = Llama.parameter(c, normal, c.dFf(), d);
    wDown = Llama.parameter(c, residual, d, c.dFf());
    heads = c.heads();
    kvHeads = c.kvHeads();
    eps = c.rmsNormEps();
  }

  /** {@code x} {@code [batch, seq, dModel]}; {@code cos} and {@code sin} from {@link RotaryEmbedding#cosSin}. */
  public Tensor forward(Tensor x, Tensor cos, Tensor sin) {
    long b = x.size(0);
    long t = x.size(1);
    long d = x.size(2);
    long headDim = d / heads;
    Tensor h = RmsNorm.apply(x, attnNorm, eps);
    Tensor q = Linear.apply(h, wq).view(b, t, heads, headDim).transpose(1, 2);
    Tensor k = Linear.apply(h, wk).view(b, t, kvHeads, headDim).transpose(1, 2);
    Tensor v = Linear.apply(h, wv).view(b, t, kvHeads, headDim).transpose(1, 2);
    Tensor attn = GroupedQueryAttention.causal(RotaryEmbedding.apply(q, cos, sin), RotaryEmbedding.apply(k, cos, sin), v, 0.0);
    x = x.add(Linear.apply(attn.transpose(1, 2).reshape(b, t, d), wo));
    return x.add(SwiGlu.apply(RmsNorm.apply(x, mlpNorm, eps), wGate, wUp, wDown));
  }

  void visitParameters(java.util.function.Consumer<Tensor> visitor) {
    for (Tensor p : new Tensor[] {attnNorm, wq, wk, wv, wo, mlpNorm, wGate, wUp, wDown}) {
      visitor.accept(p);
    }
  }
}
