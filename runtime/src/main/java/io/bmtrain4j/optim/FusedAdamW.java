package io.bmtrain4j.optim;

import java.util.List;
import org.bytedeco.pytorch.Dispatcher;
import org.bytedeco.pytorch.IValue;
import org.bytedeco.pytorch.IValueVector;
import org.bytedeco.pytorch.OperatorHandle;
import org.bytedeco.pytorch.Tensor;

/**
 * libtorch's fused multi-tensor AdamW kernel ({@code aten::_fused_adamw_}), which the Bytedeco
 * mapping does not expose as a method: called by name through the dispatcher. One call updates
 * a whole list of tensors in place; PyTorch's {@code torch.optim.AdamW(fused=True)} runs the same.
 */
final class FusedAdamW {
  // Owned: the first lookup may happen inside a user's PointerScope, which must not free this cached handle.
  private static final OperatorHandle OP =
      io.bmtrain4j.internal.Native.own(Dispatcher.singleton().findSchemaOrThrow("aten::_fused_adamw_", ""));

  private FusedAdamW() {}

  /** The caller has already incremented {@code steps} (PyTorch's order). */
  static void step(List<Tensor> params, List<Tensor> grads, List<Tensor> expAvgs, List<Tensor> expAvgSqs,
      List<Tensor> steps, double lr, double beta1, double beta2, double weightDecay, double eps) {
    if (params.isEmpty()) {
      return;
    }
    try (IValueVector stack = new IValueVector()) {
      stack.push_back(MultiTensorOps.list(params));
      stack.push_back(MultiTensorOps.list(grads));
      stack.push_back(MultiTensorOps.list(expAvgs));
      stack.push_back(MultiTensorOps.list(expAvgSqs));
      stack.push_back(MultiTensorOps.list(List.of())); // max_exp_avg_sqs: amsgrad off
      stack.push_back(MultiTensorOps.list(steps));
      stack.push_back(new IValue(lr));
      stack.push_back(new IValue(beta1));
      stack.push_back(new IValue(beta2));
      stack.push_back(new IValue(weightDecay));
      stack.push_back(new IValue(eps));
      stack.push_back(new IValue(false)); // amsgrad
      stack.push_back(new IValue(false)); // maximize
      stack.push_back(new IValue()); // grad_scale: the manager unscales
      stack.push_back(new IValue()); // found_inf: the manager skips
      OP.callBoxed(stack);
    }
  }
}
