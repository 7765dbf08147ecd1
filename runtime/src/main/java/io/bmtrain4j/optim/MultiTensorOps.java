package io.bmtrain4j.optim;

import io.bmtrain4j.internal.Native;
import java.util.List;
import org.bytedeco.pytorch.Dispatcher;
import org.bytedeco.pytorch.GenericList;
import org.bytedeco.pytorch.IValue;
import org.bytedeco.pytorch.IValueVector;
import org.bytedeco.pytorch.OperatorHandle;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorType;
import org.bytedeco.pytorch.Type;

/**
 * libtorch's multi-tensor ({@code _foreach_*}) ops, called by name through the dispatcher: one
 * call from Java for a whole list of tensors. An optimizer step touches a few hundred parameter
 * slices; one JNI call and one launch per slice and op made the step host-bound on a GPU.
 */
final class MultiTensorOps {
  // Owned: the first lookup may happen inside a user's PointerScope, which must not free these cached handles.
  private static final OperatorHandle ADD_SCALAR =
      Native.own(Dispatcher.singleton().findSchemaOrThrow("aten::_foreach_add_", "Scalar"));
  private static final OperatorHandle DIV_SCALAR =
      Native.own(Dispatcher.singleton().findSchemaOrThrow("aten::_foreach_div_", "Scalar"));
  private static final OperatorHandle COPY = Native.own(Dispatcher.singleton().findSchemaOrThrow("aten::_foreach_copy_", ""));

  private MultiTensorOps() {}

  /** {@code t += value} for every tensor. */
  static void addScalar(List<Tensor> tensors, double value) {
    callWithScalar(ADD_SCALAR, tensors, value);
  }

  /** {@code t /= value} for every tensor. */
  static void divide(List<Tensor> tensors, double value) {
    callWithScalar(DIV_SCALAR, tensors, value);
  }

  /** An in-place {@code _foreach_<op>_.Scalar}: a tensor list and a scalar. */
  private static void callWithScalar(OperatorHandle op, List<Tensor> tensors, double value) {
    if (tensors.isEmpty()) {
      return;
    }
    try (IValueVector stack = new IValueVector()) {
      stack.push_back(list(tensors));
      stack.push_back(new IValue(new org.bytedeco.pytorch.Scalar(value)));
      op.callBoxed(stack);
    }
  }

  /** {@code destinations[i].copy_(sources[i])}, casting and crossing devices as copy_ does. */
  static void copy(List<Tensor> destinations, List<Tensor> sources) {
    if (destinations.isEmpty()) {
      return;
    }
    try (IValueVector stack = new IValueVector()) {
      stack.push_back(list(destinations));
      stack.push_back(list(sources));
      stack.push_back(new IValue(false)); // non_blocking
      COPY.callBoxed(stack);
    }
  }

  /**
   * {@link #copy} in one call per destination dtype: the multi-tensor kernel's fast path assumes
   * one dtype across a list, and a model may hold bf16 and fp16 blocks side by side.
   */
  static void copyByDestinationType(List<Tensor> destinations, List<Tensor> sources) {
    java.util.Map<Integer, List<Tensor>> dst = new java.util.LinkedHashMap<>();
    java.util.Map<Integer, List<Tensor>> src = new java.util.LinkedHashMap<>();
    for (int i = 0; i < destinations.size(); i++) {
      int type = destinations.get(i).scalar_type().value;
      dst.computeIfAbsent(type, t -> new java.util.ArrayList<>()).add(destinations.get(i));
      src.computeIfAbsent(type, t -> new java.util.ArrayList<>()).add(sources.get(i));
    }
    for (Integer type : dst.keySet()) {
      copy(dst.get(type), src.get(type));
    }
  }

  /** A {@code Tensor[]} argument for a boxed call. */
  static IValue list(List<Tensor> tensors) {
    GenericList l = new GenericList(new Type.TypePtr(TensorType.get()));
    for (Tensor t : tensors) {
      l.push_back(new IValue(t));
    }
    return new IValue(l);
  }
}
