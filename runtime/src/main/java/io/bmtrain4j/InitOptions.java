package io.bmtrain4j;

import io.bmtrain4j.dist.Backend;
import java.time.Duration;
import java.util.Map;
import java.util.Objects;

/** Options of {@link Bmt#initDistributed}: the seed every rank shares, the collective timeout, the environment. */
public final class InitOptions {
  private final long seed;
  private final Duration timeout;
  private final Map<String, String> environment;
  private final Backend backend;
  private final boolean preferCudnnAttention;
  private final boolean processGuards;
  private final boolean separateReduceStream;

  private InitOptions(Builder b) {
    this.seed = b.seed;
    this.timeout = b.timeout;
    this.environment = b.environment;
    this.backend = b.backend;
    this.preferCudnnAttention = b.preferCudnnAttention;
    this.processGuards = b.processGuards;
    this.separateReduceStream = b.separateReduceStream;
  }

  /** Whether NCCL reductions get their own communicator and stream; see {@link Builder#separateReduceStream}. */
  public boolean separateReduceStream() {
    return separateReduceStream;
  }

  /** Whether this rank is a whole process that guards may end; see {@link Builder#processGuards}. */
  public boolean processGuards() {
    return processGuards;
  }

  /** Whether attention tries cuDNN's kernel first where PyTorch does: see {@link AttentionBackends}. */
  public boolean preferCudnnAttention() {
    return preferCudnnAttention;
  }

  /** Gloo (CPU tensors, the default) or NCCL (one GPU per rank, {@code LOCAL_RANK}). */
  public Backend backend() {
    return backend;
  }

  public static Builder builder() {
    return new Builder();
  }

  public long seed() {
    return seed;
  }

  public Duration timeout() {
    return timeout;
  }

  public Map<String, String> environment() {
    return environment;
  }

  /** Builder of {@link InitOptions}. */
  public static final class Builder {
    private long seed = 0;
    private Duration timeout = Duration.ofMinutes(5);
    private Map<String, String> environment = System.getenv();
    private Backend backend = Backend.GLOO;
    private boolean preferCudnnAttention = true;
    private boolean processGuards = true;
    private boolean separateReduceStream;

    /** The collectives' backend: Gloo (CPU, default) or NCCL (GPUs). */
    public Builder backend(Backend backend) {
      this.backend = java.util.Objects.requireNonNull(backend, "backend");
      return this;
    }

    /** As {@link #backend(Backend)}, by name: "gloo" or "nccl". */
    public Builder backend(String backend) {
      return backend(Backend.parse(backend));
    }

    /** The seed of libtorch's generator, the same on every rank (default 0). */
    public Builder seed(long seed) {
      this.seed = seed;
      return this;
    }

    /** How long a collective or the rendezvous may wait for a peer before failing (default 5 minutes). */
    public Builder timeout(Duration timeout) {
      if (timeout.isNegative() || timeout.isZero()) {
        throw new IllegalArgumentException("timeout must be positive, got " + timeout);
      }
      this.timeout = timeout;
      return this;
    }

    /** The variables to read instead of the process environment (tests, embedding launchers). */
    public Builder environment(Map<String, String> environment) {
      this.environment = Map.copyOf(Objects.requireNonNull(environment));
      return this;
    }

    /**
     * Whether {@code scaled_dot_product_attention} tries cuDNN's fused attention first on GPUs of
     * compute capability 9.0 and 10.0, as PyTorch's newer releases do (default true); false keeps
     * libtorch 2.10's own order (FlashAttention-2 first). See {@link AttentionBackends}.
     */
    public Builder preferCudnnAttention(boolean prefer) {
      this.preferCudnnAttention = prefer;
      return this;
    }

    /**
     * Whether this rank owns its process (default true): then a rendezvous stuck in native code
     * past the timeout, or the death of the rank's launcher, ends the process
     * ({@code dist.ProcessGuards}). Ranks run as threads of one JVM (tests) turn it off.
     */
    public Builder processGuards(boolean guards) {
      this.processGuards = guards;
      return this;
    }

    /**
     * With NCCL: run reduce-scatters and all-reduces on a second communicator and stream, so they
     * never queue behind (or hold up) the all-gathers (default false; see the NCCL communicator's
     * [Note: a reduce lane]). Gloo ignores it.
     */
    public Builder separateReduceStream(boolean separate) {
      this.separateReduceStream = separate;
      return this;
    }

    public InitOptions build() {
      return new InitOptions(this);
    }
  }
}
