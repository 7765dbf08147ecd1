package io.bmtrain4j.zero;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;

/**
 * The tensors inside a forward's arguments and results. Arguments may hold a {@code Tensor}, a
 * {@code Tensor[]}, a {@code List} of tensors or a {@code TensorVector}; anything else passes
 * through untouched. Results must be one of those four containers.
 */
final class TensorTree {
  private TensorTree() {}

  static List<Tensor> tensorsIn(Object[] args) {
    List<Tensor> out = new ArrayList<>();
    for (Object a : args) {
      collect(a, out);
    }
    return out;
  }

  private static void collect(Object a, List<Tensor> out) {
    if (a instanceof Tensor) {
      out.add((Tensor) a);
    } else if (a instanceof Tensor[]) {
      for (Tensor t : (Tensor[]) a) {
        out.add(t);
      }
    } else if (a instanceof TensorVector) {
      TensorVector v = (TensorVector) a;
      for (long i = 0; i < v.size(); i++) {
        out.add(new Tensor(v.get(i))); // get() points into the vector: hold the tensor itself
      }
    } else if (a instanceof List<?>) {
      for (Object o : (List<?>) a) {
        if (o instanceof Tensor) {
          out.add((Tensor) o);
        }
      }
    }
  }

  /** A copy of {@code args} whose tensors are detached leaves with the originals' requires_grad. */
  static Object[] detachArgs(Object[] args) {
    Object[] out = new Object[args.length];
    for (int i = 0; i < args.length; i++) {
      out[i] = detach(args[i]);
    }
    return out;
  }

  private static Tensor leaf(Tensor t) {
    if (t == null || !t.defined()) {
      return t;
    }
    Tensor d = t.detach();
    if (t.requires_grad()) {
      d.requires_grad_(true);
    }
    return d;
  }

  private static Object detach(Object a) {
    if (a instanceof Tensor) {
      return leaf((Tensor) a);
    } else if (a instanceof Tensor[]) {
      Tensor[] src = (Tensor[]) a;
      Tensor[] dst = new Tensor[src.length];
      for (int i = 0; i < src.length; i++) {
        dst[i] = leaf(src[i]);
      }
      return dst;
    } else if (a instanceof TensorVector) {
      TensorVector v = (TensorVector) a;
      TensorVector d = new TensorVector();
      for (long i = 0; i < v.size(); i++) {
        d.push_back(leaf(v.get(i)));
      }
      return d;
    } else if (a instanceof List<?>) {
      List<Object> d = new ArrayList<>();
      for (Object o : (List<?>) a) {
        d.add(o instanceof Tensor ? leaf((Tensor) o) : o);
      }
      return d;
    }
    return a;
  }

  static List<Tensor> tensorsOut(Object result, String block) {
    if (result instanceof Tensor || result instanceof Tensor[] || result instanceof TensorVector) {
      return tensorsIn(new Object[] {result});
    }
    if (result instanceof List<?>) {
      for (Object o : (List<?>) result) {
        if (!(o instanceof Tensor)) {
          throw badResult(block, "a List holding " + (o == null ? "null" : o.getClass().getName()));
        }
      }
      return tensorsIn(new Object[] {result});
    }
    throw badResult(block, result == null ? "null" : result.getClass().getName());
  }

  private static IllegalStateException badResult(String block, String what) {
    return new IllegalStateException(
        "the checkpointed block " + block + " returned " + what
            + ": a checkpointed forward must return a Tensor, Tensor[], List<Tensor> or TensorVector");
  }

  /** {@code template}'s container with its tensors replaced, in order, by {@code tensors}. */
  @SuppressWarnings("unchecked")
  static <R> R replace(R template, List<Tensor> tensors) {
    if (template instanceof Tensor) {
      return (R) tensors.get(0);
    } else if (template instanceof Tensor[]) {
      return (R) tensors.toArray(new Tensor[0]);
    } else if (template instanceof TensorVector) {
      TensorVector v = new TensorVector();
      for (Tensor t : tensors) {
        v.push_back(t);
      }
      return (R) v;
    }
    return (R) new ArrayList<>(tensors);
  }
}
