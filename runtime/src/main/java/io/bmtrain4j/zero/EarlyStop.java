package io.bmtrain4j.zero;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.Edge;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Node;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;

/**
 * A recompute that leaves out the block's last matmul, whose product its backward never reads.
 *
 * <p>[Note: early stop] A recompute exists to rebuild what backward reads: the tensors autograd
 * saved. In a transformer block the last of them is the MLP's hidden activation, saved by the
 * output projection {@code h @ w2}; that product itself is read by nobody, since only additions
 * and dropout stand between it and the block's output. PyTorch's non-reentrant checkpoint learns
 * this through saved-tensor hooks and stops the recompute there, before the matmul runs (a
 * third of the block's linear FLOPs: 0.66 ms per 1.3B block on an H100). libtorch offers those
 * hooks only to Python, so the block says it instead: {@link #lastMatmul} computes {@code
 * input.matmul(weight)} everywhere except inside a recompute, where it returns a stand-in: an
 * uninitialised leaf of the product's shape. The block's backward then runs in two passes
 * ({@link #addStandInRoots}): the gradient reaching each stand-in first (a short pass through the
 * additions and dropout after it), then the whole recomputed graph from the outputs plus {@code
 * input} and {@code weight} as extra roots, with the matmul's gradients ({@code g @ weightᵀ},
 * {@code inputᵀ @ g}). A {@link io.bmtrain4j.autograd.CustomBackward} node would do the same in
 * one pass, but its wiring has the engine fill a zero gradient the size of each input (the MLP's
 * hidden activation), about 0.1 ms per block.
 *
 * <p>The stand-in's values are garbage, so nothing whose backward reads them may lie between it
 * and the block's outputs. After each recompute that used it, {@link #verify} walks the
 * recomputed graph from the outputs and rejects any path to the stand-in through a node not in
 * {@link #VALUE_FREE}: additions, dropout and masks, casts and reshapes, whose backward needs
 * no input values. A use outside the autograd graph (reading the product's values in Java)
 * cannot be seen; the contract forbids it.
 */
public final class EarlyStop {
  private EarlyStop() {}

  /** Autograd nodes whose backward reads no value of the input on our path. */
  static final Set<String> VALUE_FREE = Set.of(
      "AddBackward0", "AddBackward1", "SubBackward0", "SubBackward1", "NegBackward0",
      "NativeDropoutBackward0", "MulBackward1", "DivBackward1",
      "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "TransposeBackward0",
      "TBackward0", "PermuteBackward0", "ExpandBackward0", "UnsqueezeBackward0",
      "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2", "SliceBackward0",
      "SelectBackward0", "CloneBackward0", "AliasBackward0", "ToCopyBackward0");

  /**
   * {@code a * b} with one differentiable side reads only the other side in backward; it is how
   * libtorch applies a dropout mask on the CPU.
   */
  private static final String MUL = "MulBackward0";

  /** A matmul a recompute left out: its operands and the stand-in for its product. */
  record StandIn(Tensor input, Tensor weight, Tensor product) {}

  /** The stand-ins made in the recompute running on this thread; null outside a recompute. */
  private static final ThreadLocal<List<StandIn>> RECOMPUTE = new ThreadLocal<>();

  /**
   * {@code input.matmul(weight)} for a {@code [in, out]} weight; see [Note: early stop]. Use it
   * for a checkpointed block's last matmul when its result reaches the block's outputs only
   * through additions, dropout, casts and reshapes. Inside a recompute the product is not
   * computed and its values must not be read; {@link #verify} rejects a graph that would.
   */
  public static Tensor lastMatmul(Tensor input, Tensor weight) {
    if (weight.dim() != 2 || input.dim() < 1 || input.size(-1) != weight.size(0)) {
      throw new IllegalArgumentException("lastMatmul multiplies [..., in] by an [in, out] weight; got input "
          + Arrays.toString(input.sizes().vec().get()) + " and weight " + Arrays.toString(weight.sizes().vec().get()));
    }
    List<StandIn> standIns = RECOMPUTE.get();
    boolean differentiable = input.requires_grad() || weight.requires_grad();
    if (standIns == null || !GradMode.is_enabled() || !differentiable) {
      return input.matmul(weight);
    }
    long[] shape = input.sizes().vec().get();
    shape[shape.length - 1] = weight.size(1);
    Tensor leaf = torch.empty(shape, input.options(), new org.bytedeco.pytorch.MemoryFormatOptional()).requires_grad_(true);
    Tensor product = leaf.alias(); // a node of its own, which verify() recognises on the way from the outputs
    standIns.add(new StandIn(input, weight, product));
    return product;
  }

  /**
   * The first pass of a backward through stand-ins (see [Note: early stop]): the gradient
   * reaching each stand-in from {@code roots}, turned into the left-out matmul's gradients, which
   * join {@code roots} and {@code grads} as roots of their own for the second pass. The graph is
   * kept for that pass.
   */
  static void addStandInRoots(TensorVector roots, TensorVector grads, List<StandIn> standIns) {
    if (standIns.isEmpty() || roots.size() == 0) {
      return;
    }
    TensorVector products = new TensorVector();
    for (StandIn s : standIns) {
      products.push_back(s.product);
    }
    TensorVector reaching = torch.grad(roots, products, grads, new BoolOptional(true), false, true);
    for (int i = 0; i < standIns.size(); i++) {
      Tensor g = reaching.get(i);
      StandIn s = standIns.get(i);
      if (!g.defined()) {
        continue; // the product reaches no output
      }
      if (s.input.requires_grad()) {
        roots.push_back(s.input);
        grads.push_back(g.matmul(s.weight.t()));
      }
      if (s.weight.requires_grad()) {
        roots.push_back(s.weight);
        grads.push_back(s.input.reshape(-1, s.weight.size(0)).t().matmul(g.reshape(-1, s.weight.size(1))));
      }
    }
  }

  /**
   * Opens a recompute on this thread, which leaves last matmuls out if {@code skip}; pass the
   * result to {@link #end}.
   */
  static List<StandIn> begin(boolean skip) {
    List<StandIn> enclosing = RECOMPUTE.get();
    RECOMPUTE.set(skip ? new ArrayList<>() : null);
    return enclosing;
  }

  /** Closes the recompute {@link #begin} opened; returns the stand-ins it made. */
  static List<StandIn> end(List<StandIn> enclosing) {
    List<StandIn> standIns = RECOMPUTE.get();
    standIns = standIns == null ? List.of() : standIns;
    if (enclosing == null) {
      RECOMPUTE.remove();
    } else {
      RECOMPUTE.set(enclosing);
    }
    return standIns;
  }

  /**
   * Checks that no recomputed node between {@code outputs} and a stand-in reads the stand-in's
   * values in backward; see [Note: early stop].
   */
  static void verify(List<Tensor> outputs, List<StandIn> standIns, String block) {
    if (standIns.isEmpty()) {
      return;
    }
    try (PointerScope scope = new PointerScope()) {
      Set<Long> targets = new HashSet<>();
      for (StandIn s : standIns) {
        targets.add(s.product.grad_fn().address());
      }
      Map<Long, Boolean> reaches = new HashMap<>();
      for (Tensor out : outputs) {
        Node fn = out == null || !out.defined() ? null : out.grad_fn();
        if (fn != null && !fn.isNull()) {
          reachesStandIn(fn, targets, reaches, block);
        }
      }
    }
  }

  private static boolean reachesStandIn(Node node, Set<Long> targets, Map<Long, Boolean> reaches, String block) {
    long address = node.address();
    if (targets.contains(address)) {
      return true;
    }
    Boolean known = reaches.get(address);
    if (known != null) {
      return known;
    }
    boolean onPath = false;
    int differentiableInputs = 0;
    for (int i = 0; i < node.num_outputs(); i++) {
      Edge edge = node.next_edge(i);
      if (!edge.is_valid()) {
        continue;
      }
      differentiableInputs++;
      onPath |= reachesStandIn(edge.function(), targets, reaches, block);
    }
    if (onPath) {
      String name = node.name().getString();
      boolean valueFree = VALUE_FREE.contains(name) || (name.equals(MUL) && differentiableInputs == 1);
      if (!valueFree) {
        throw new IllegalStateException(block + ": the result of lastMatmul reaches the block's output through "
            + name + ", whose backward reads that result; a recompute does not compute it (see EarlyStop)."
            + " Use lastMatmul only for the block's last matmul, followed by nothing but additions, dropout,"
            + " casts and reshapes, or use an ordinary matmul there.");
      }
    }
    reaches.put(address, onPath);
    return onPath;
  }
}
