package io.bmtrain4j.zero;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * A small model and sharded subclasses written by hand exactly as the processor generates them,
 * so the runtime is tested on its own; the examples module runs the same parity on generated code.
 */
final class HandWrittenModels {
  private HandWrittenModels() {}

  /** What a block does with its input {@code x} and hidden activation {@code h} (EarlyStopTest varies it). */
  @FunctionalInterface
  interface Tail {
    Tensor apply(Tensor x, Tensor h, Tensor w2);
  }

  static final Tail RESIDUAL_MATMUL = (x, h, w2) -> x.add(h.matmul(w2));

  static class Block {
    Tensor w1;
    Tensor b1;
    Tensor w2;
    double dropout;
    final Tail tail;
    boolean training = true;
    int calls;

    Block(int d, int h, double dropout, Tail tail) {
      w1 = torch.randn(d, h).mul(new Scalar(0.3)).requires_grad_(true);
      b1 = torch.randn(h).mul(new Scalar(0.1)).requires_grad_(true);
      w2 = torch.randn(h, d).mul(new Scalar(0.3)).requires_grad_(true);
      this.dropout = dropout;
      this.tail = tail;
    }

    Tensor forward(Tensor x) {
      calls++;
      Tensor h = torch.gelu(x.matmul(w1).add(b1));
      if (dropout > 0) {
        h = torch.dropout(h, dropout, training);
      }
      return tail.apply(x, h, w2);
    }
  }

  static final class ShardedBlock extends Block implements ShardedModule {
    private final ShardedModuleRuntime runtime;

    ShardedBlock(int d, int h, double dropout, Tail tail) {
      super(d, h, dropout, tail);
      runtime = ShardedModuleRuntime.builder("Block").tensor("w1", w1).tensor("b1", b1).tensor("w2", w2).build();
    }

    @Override
    public ShardedModuleRuntime shardedRuntime() {
      return runtime;
    }

    @Override
    Tensor forward(Tensor x) {
      return runtime.forward(new Object[] {x}, a -> super.forward((Tensor) a[0]));
    }
  }

  static class Net {
    Tensor embed;
    List<Block> layers = new ArrayList<>();

    Net(int vocab, int d, int h, int n, double dropout, boolean sharded) {
      this(vocab, d, h, n, dropout, RESIDUAL_MATMUL, sharded);
    }

    Net(int vocab, int d, int h, int n, double dropout, Tail tail, boolean sharded) {
      embed = torch.randn(vocab, d).mul(new Scalar(0.5)).requires_grad_(true);
      for (int i = 0; i < n; i++) {
        layers.add(sharded ? new ShardedBlock(d, h, dropout, tail) : new Block(d, h, dropout, tail));
      }
    }

    Tensor forward(Tensor tokens) {
      Tensor x = torch.embedding(embed, tokens);
      for (Block b : layers) {
        x = b.forward(x);
      }
      return x.matmul(embed.t());
    }
  }

  static final class ShardedNet extends Net implements ShardedModule {
    private final ShardedModuleRuntime runtime;

    ShardedNet(int vocab, int d, int h, int n, double dropout, BlockOptions options) {
      this(vocab, d, h, n, dropout, RESIDUAL_MATMUL, options);
    }

    ShardedNet(int vocab, int d, int h, int n, double dropout, Tail tail, BlockOptions options) {
      super(vocab, d, h, n, dropout, tail, true);
      runtime = ShardedModuleRuntime.builder("Net").tensor("embed", embed)
          .blockList("layers", layers, options, "ShardedBlock").build();
    }

    @Override
    public ShardedModuleRuntime shardedRuntime() {
      return runtime;
    }

    @Override
    Tensor forward(Tensor tokens) {
      return runtime.forward(new Object[] {tokens}, a -> super.forward((Tensor) a[0]));
    }
  }
}
