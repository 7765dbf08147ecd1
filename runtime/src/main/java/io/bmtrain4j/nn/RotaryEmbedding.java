package io.bmtrain4j.nn;

import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * Rotary position embeddings as LLaMA (and Hugging Face's {@code LlamaRotaryEmbedding}) apply
 * them: each head's dimensions split in two halves rotated together, frequencies
 * {@code theta^(-2i/headDim)}, optionally rescaled the way Llama 3.1+ does ({@link Llama3Scaling}).
 * The model computes {@link #cosSin} once per forward and hands it to every block, as Hugging
 * Face does, so a block's recompute reuses it.
 */
public final class RotaryEmbedding {
  private final long headDim;
  private final double theta;
  private final Llama3Scaling scaling;

  /** Llama 3.1's long-context rescaling of the frequencies ({@code rope_scaling} of type {@code llama3}). */
  public record Llama3Scaling(double factor, double lowFreqFactor, double highFreqFactor, long originalMaxPositions) {}

  public RotaryEmbedding(long headDim, double theta, Llama3Scaling scaling) {
    if (headDim % 2 != 0) {
      throw new IllegalArgumentException("rotary embeddings need an even head dimension, got " + headDim);
    }
    this.headDim = headDim;
    this.theta = theta;
    this.scaling = scaling;
  }

  /** The inverse frequencies, fp32, {@code [headDim / 2]}. */
  double[] inverseFrequencies() {
    double[] inv = new double[(int) (headDim / 2)];
    for (int i = 0; i < inv.length; i++) {
      // As Hugging Face computes it: in fp32, from an int64 arange.
      float exponent = (float) (2L * i) / (float) headDim;
      inv[i] = (float) (1.0 / Math.pow(theta, exponent));
    }
    if (scaling != null) {
      double lowWavelen = scaling.originalMaxPositions() / scaling.lowFreqFactor();
      double highWavelen = scaling.originalMaxPositions() / scaling.highFreqFactor();
      for (int i = 0; i < inv.length; i++) {
        double wavelen = 2 * Math.PI / inv[i];
        if (wavelen > lowWavelen) {
          inv[i] = inv[i] / scaling.factor();
        } else if (wavelen >= highWavelen) {
          double smooth = (scaling.originalMaxPositions() / wavelen - scaling.lowFreqFactor())
              / (scaling.highFreqFactor() - scaling.lowFreqFactor());
          inv[i] = (1 - smooth) * inv[i] / scaling.factor() + smooth * inv[i];
        }
        inv[i] = (float) inv[i];
      }
    }
    return inv;
  }

  /**
   * {@code cos} and {@code sin} for positions {@code 0..seq-1}, each {@code [seq, headDim]} of
   * {@code dtype} on {@code device} (computed in fp32).
   */
  public Tensor[] cosSin(long seq, Device device, torch.ScalarType dtype) {
    double[] inv = inverseFrequencies();
    float[] f = new float[inv.length];
    for (int i = 0; i < f.length; i++) {
      f[i] = (float) inv[i];
    }
    Tensor invFreq = torch.tensor(f);
    Tensor positions = torch.arange(new Scalar(seq)).to(torch.ScalarType.Float);
    Tensor freqs = torch.outer(positions, invFreq);
    Tensor emb = torch.cat(new org.bytedeco.pytorch.TensorVector(freqs, freqs), -1);
    return new Tensor[] {emb.cos().to(device, dtype), emb.sin().to(device, dtype)};
  }

  /**
   * Rotates {@code x} ({@code [batch, heads, seq, headDim]}) by the positions' angles:
   * {@code x * cos + rotateHalf(x) * sin}, with {@code cos} and {@code sin} from {@link #cosSin}.
   */
  public static Tensor apply(Tensor x, Tensor cos, Tensor sin) {
    long half = x.size(-1) / 2;
    Tensor first = x.narrow(-1, 0, half);
    Tensor second = x.narrow(-1, half, half);
    Tensor rotated = torch.cat(new org.bytedeco.pytorch.TensorVector(second.neg(), first), -1);
    return x.mul(cos).add(rotated.mul(sin));
  }
}
