package test.gpt;

import io.bmtrain4j.annotations.Distributed;
import org.bytedeco.pytorch.LayerNormImpl;
import org.bytedeco.pytorch.Module;
import org.bytedeco.pytorch.Tensor;

public class TransformerBlock extends Module {
  @Distributed Tensor wq, wk, wv, wo;
  @Distributed LayerNormImpl ln1;

  public TransformerBlock(GPT.Config c) {}

  public Tensor forward(Tensor x, Tensor mask) {
    return ln1.forward(x.matmul(wq).matmul(wk).matmul(wv).matmul(wo).add(mask));
  }
}
