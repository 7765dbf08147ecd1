package io.bmtrain4j.optim;

/**
 * Adam hyper-parameters. Weight decay is decoupled (AdamW); {@code holdSteps} keeps lr at 0 for the
 * first steps; {@code stepChunkElements} bounds how many parameter elements one part of the step
 * updates at a time (each part holds its blocks' gradients in fp32, 4 bytes per element);
 * {@code mixedPrecisionKernel} lets bf16/fp16 parameters on a GPU be updated by bmtrain4j's own
 * kernel, which reads their gradients without an fp32 copy.
 */
public record AdamOptions(double lr, double beta1, double beta2, double eps, double weightDecay, int holdSteps,
    long stepChunkElements, boolean mixedPrecisionKernel) {
  public AdamOptions {
    if (lr < 0 || beta1 < 0 || beta1 >= 1 || beta2 < 0 || beta2 >= 1 || eps <= 0 || weightDecay < 0 || holdSteps < 0
        || stepChunkElements < 1) {
      throw new IllegalArgumentException("invalid Adam options " + this);
    }
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Builder with PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay. */
  public static final class Builder {
    private double lr = 1e-3;
    private double beta1 = 0.9;
    private double beta2 = 0.999;
    private double eps = 1e-8;
    private double weightDecay = 0;
    private int holdSteps = 0;
    private long stepChunkElements = 1L << 29;
    private boolean mixedPrecisionKernel = true;

    public Builder lr(double v) {
      lr = v;
      return this;
    }

    public Builder betas(double b1, double b2) {
      beta1 = b1;
      beta2 = b2;
      return this;
    }

    public Builder eps(double v) {
      eps = v;
      return this;
    }

    public Builder weightDecay(double v) {
      weightDecay = v;
      return this;
    }

    public Builder holdSteps(int v) {
      holdSteps = v;
      return this;
    }

    /**
     * Parameter elements one part of the step updates at a time, whole blocks each (default 2^29:
     * at most 2 GiB of fp32 gradients alive at once). Smaller saves memory in the step; each part
     * costs a few more launches (one part per block made a 1.3B step 10 ms slower on an H100).
     */
    public Builder stepChunkElements(long v) {
      stepChunkElements = v;
      return this;
    }

    /**
     * Whether bf16/fp16 parameters on a GPU are updated by bmtrain4j's mixed-precision AdamW
     * kernel (default true; compiled by NVRTC on first use). It reads each 2-byte gradient as
     * it is, where libtorch's fused AdamW needs an fp32 copy of it: 26 instead of 34 bytes moved
     * per parameter. False keeps libtorch's kernel (as on the CPU, and where NVRTC is missing).
     */
    public Builder mixedPrecisionKernel(boolean v) {
      mixedPrecisionKernel = v;
      return this;
    }

    public AdamOptions build() {
      return new AdamOptions(lr, beta1, beta2, eps, weightDecay, holdSteps, stepChunkElements, mixedPrecisionKernel);
    }
  }
}
