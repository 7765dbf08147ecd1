package test.awkward;

import io.bmtrain4j.annotations.Distributed;
import io.bmtrain4j.annotations.EntryPoint;
import java.io.IOException;
import java.util.List;
import org.bytedeco.pytorch.LinearImpl;
import org.bytedeco.pytorch.Module;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;

public class Outer {
  /** A generic block with a generic, throwing, varargs constructor. */
  public static class Base<T extends CharSequence> extends Module {
    @Distributed Tensor w;
    T label;

    protected <E extends Exception> Base(T label, Tensor... init) throws E {
      this.label = label;
    }

    public Tensor forward(Tensor x) {
      return x.matmul(w);
    }

    @EntryPoint
    public T label(T fallback) {
      return label == null ? fallback : label;
    }
  }

  /** Inherits Base's field, forward and entry point; adds its own overloads. */
  public static class Inner extends Base<String> {
    @Distributed protected LinearImpl proj;

    public Inner(String name, Tensor... init) throws IOException {
      super(name, init);
    }

    @SafeVarargs
    protected Inner(List<Tensor>... groups) {
      super("groups");
    }

    Inner(int a) {
      super("a" + a);
    }

    public Tensor[] forward(Tensor x, Tensor y) throws IOException {
      return new Tensor[] {forward(x), forward(y)};
    }

    public List<Tensor> forward(List<Tensor> xs) {
      return xs;
    }

    protected Tensor forward(int k, Tensor... xs) {
      return xs[k];
    }

    int forward(String s) {
      return s.length();
    }

    @EntryPoint
    void reset(int a, Object bmt$args) {}

    @EntryPoint
    public <X extends Tensor> X pick(X x, Class<X> type) throws IOException, InterruptedException {
      return x;
    }

    @EntryPoint
    public TensorVector all(Object any) {
      return new TensorVector();
    }
  }
}
