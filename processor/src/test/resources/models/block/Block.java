package test.block;

import io.bmtrain4j.annotations.Distributed;
import org.bytedeco.pytorch.LayerNormImpl;
import org.bytedeco.pytorch.LayerNormOptions;
import org.bytedeco.pytorch.LinearImpl;
import org.bytedeco.pytorch.Module;
import org.bytedeco.pytorch.Tensor;

public class Block extends Module {
  @Distributed Tensor wq, wk;
  @Distributed protected LinearImpl proj;
  @Distributed LayerNormImpl ln1;
  int hidden;

  public Block(int hidden, LayerNormImpl norm) {
    this.hidden = hidden;
    wq = register_parameter("wq", new Tensor());
    wk = register_parameter("wk", new Tensor());
    proj = register_module("proj", new LinearImpl(hidden, hidden));
    ln1 = register_module("ln1", norm);
  }

  protected Block() {
    this(8, new LayerNormImpl((LayerNormOptions) null));
  }

  public Tensor forward(Tensor x, Tensor mask) {
    return proj.forward(ln1.forward(x.matmul(wq).add(mask)));
  }

  private Tensor forward(Tensor x) {
    return x;
  }

  public Tensor unwrapped(Tensor x) {
    return forward(x);
  }
}
