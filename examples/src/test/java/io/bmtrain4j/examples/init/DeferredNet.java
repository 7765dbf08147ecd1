package io.bmtrain4j.examples.init;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.annotations.BlockList;
import io.bmtrain4j.annotations.Distributed;
import io.bmtrain4j.init.Initializer;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;

/** A model built without materialising any deferred parameter; {@code Bmt.initParameters} draws them. */
public class DeferredNet {
  @Distributed Tensor embed;
  @Distributed Tensor scale;
  @BlockList List<DeferredBlock> layers = new ArrayList<>();

  public DeferredNet(int rows, int d, int n) {
    embed = Bmt.parameter(Initializer.normal(0.5), rows, d);
    scale = Bmt.parameter(Initializer.ones(), d);
    for (int i = 0; i < n; i++) {
      layers.add(new DistributedDeferredBlock(d));
    }
  }

  public Tensor forward(Tensor x) {
    Tensor h = x.matmul(embed).mul(scale);
    for (DeferredBlock b : layers) {
      h = b.forward(h);
    }
    return h.mul(new Scalar(1.0));
  }
}
