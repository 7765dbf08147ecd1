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
 * no input values. It also rejects an operand computed from a stand-in, and the two passes
 * reject in-place changes to the operands ({@link #addStandInRoots}) or the result ({@link
 * #explainFailure}). Values taken from the product outside autograd (a mask made from it, a
 * detached copy, a read in Java) cannot be seen; the contract forbids them. Only the recompute's
 * own forward sees the stand-ins: {@link ShardedModuleRuntime#forward} hides them from nested
 * sharded modules, whose last matmul is then computed.
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

  /**
   * A matmul a recompute left out: its operands with their versions at the call, the leaf that
   * stands in for its product, and the product handed to the block (a node of its own).
   */
  record StandIn(Tensor input, long inputVersion, Tensor weight, long weightVersion, Tensor leaf, Tensor product) {}

  /** The stand-ins made in the recompute running on this thread; null outside a recompute. */
  private static final ThreadLocal<List<StandIn>> RECOMPUTE = new ThreadLocal<>();

  /**
   * {@code input.matmul(weight)} for a {@code [in, out]} weight; see [Note: early stop]. Use it
   * in a checkpointed block's own forward (a nested sharded module's forward computes the
   * product) for the block's last matmul, when its result reaches the block's outputs only
   * through additions, dropout, casts and reshapes. Inside a recompute the product is not
   * computed: {@link #verify} rejects a graph whose backward would read it, an operand computed
   * from another stand-in, and in-place changes to the result or the operands. Values derived
   * from the result outside autograd (a mask made from it, a detached copy) cannot be seen and
   * would be garbage in a recompute: do not make them.
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
    standIns.add(new StandIn(input, input._version(), weight, weight._version(), leaf, product));
    return product;
  }

  /**
   * The first pass of a backward through stand-ins (see [Note: early stop]): the gradient
   * reaching each stand-in from {@code roots}, turned into the left-out matmul's gradients, which
   * join {@code roots} and {@code grads} as roots of their own for the second pass. The graph is
   * kept for that pass.
   */
  static void addStandInRoots(TensorVector roots, TensorVector grads, List<StandIn> standIns, String block) {
    if (standIns.isEmpty() || roots.size() == 0) {
      return;
    }
    TensorVector products = new TensorVector();
    for (StandIn s : standIns) {
      if (s.input._version() != s.inputVersion || s.weight._version() != s.weightVersion) {
        throw new IllegalStateException(block + ": an operand of lastMatmul was modified in place after the call;"
            + " the left-out matmul's gradient needs it as it was. Modify a copy, or use an ordinary matmul there.");
      }
      products.push_back(s.product);
    }
    TensorVector reaching = torch.grad(roots, products, grads, new BoolOptional(true), false, true);
    for (int i = 0; i < standIns.size(); i++) {
      StandIn s = standIns.get(i);
      s.leaf.requires_grad_(false); // the second pass then leaves no product-sized .grad on it
      Tensor g = reaching.get(i);
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
      g.close();
    }
    reaching.close();
    products.close();
  }

  /**
   * {@code e}, thrown by a recompute's forward, explained if it is autograd refusing an in-place
   * change to a stand-in (a view of a leaf).
   */
  static RuntimeException explainFailure(RuntimeException e, String block) {
    List<StandIn> standIns = RECOMPUTE.get();
    // libtorch's words for an in-place op on a view of a leaf: the stand-in is one.
    if (standIns == null || standIns.isEmpty() || !String.valueOf(e.getMessage()).contains("a view of a leaf Variable")) {
      return e;
    }
    return new IllegalStateException(block + ": the result of lastMatmul was modified in place, which its stand-in in"
        + " a recompute cannot be (see EarlyStop); use an out-of-place op (add, not add_) after lastMatmul", e);
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
   * values in backward, and that no stand-in feeds another's operands; see [Note: early stop].
   */
  static void verify(List<Tensor> outputs, List<StandIn> standIns, String block) {
    if (standIns.isEmpty()) {
      return;
    }
    try (PointerScope scope = new PointerScope()) {
      PathsToStandIns paths = new PathsToStandIns(standIns);
      for (Tensor out : outputs) {
        Node fn = out == null || !out.defined() ? null : out.grad_fn();
        if (fn != null && !fn.isNull()) {
          paths.reaches(fn, block);
        }
      }
      for (StandIn s : standIns) {
        for (Tensor operand : List.of(s.input, s.weight)) {
          Node fn = operand.grad_fn();
          if (fn != null && !fn.isNull() && paths.reaches(fn, null)) {
            throw new IllegalStateException(block + ": an operand of lastMatmul is computed from another lastMatmul's"
                + " result, which a recompute does not compute (see EarlyStop). Use lastMatmul only for the block's"
                + " last matmul.");
          }
        }
      }
    }
  }

  /** Which autograd nodes lead to a stand-in, walking from the outputs towards the inputs. */
  private static final class PathsToStandIns {
    private final Set<Long> targets = new HashSet<>();
    private final Map<Long, Boolean> known = new HashMap<>();
    private long oldestTarget = -1; // as unsigned: the largest sequence number

    PathsToStandIns(List<StandIn> standIns) {
      for (StandIn s : standIns) {
        Node fn = s.product.grad_fn();
        targets.add(fn.address());
        if (Long.compareUnsigned(fn.sequence_nr(), oldestTarget) < 0) {
          oldestTarget = fn.sequence_nr();
        }
      }
    }

    /**
     * Whether {@code node} leads to a stand-in. With a {@code block} name, a node on such a path
     * whose backward reads its input's values is an error.
     */
    boolean reaches(Node node, String block) {
      long address = node.address();
      if (targets.contains(address)) {
        return true;
      }
      // A node recorded before every stand-in cannot consume one, so the walk stays in the
      // block's tail. Sequence numbers count per thread: this holds because a recompute's forward
      // runs on one thread (a block's forward must not run autograd ops on others). The engine's
      // AccumulateGrad nodes carry the largest number and are walked: they have no inputs.
      if (Long.compareUnsigned(node.sequence_nr(), oldestTarget) < 0) {
        return false;
      }
      Boolean seen = known.get(address);
      if (seen != null) {
        return seen;
      }
      boolean onPath = false;
      int differentiableInputs = 0;
      for (int i = 0; i < node.num_outputs(); i++) {
        Edge edge = node.next_edge(i);
        if (!edge.is_valid()) {
          continue;
        }
        differentiableInputs++;
        onPath |= reaches(edge.function(), block);
      }
      if (onPath && block != null) {
        String name = node.name().getString();
        boolean valueFree = VALUE_FREE.contains(name) || (name.equals(MUL) && differentiableInputs == 1);
        if (!valueFree) {
          throw new IllegalStateException(block + ": the result of lastMatmul reaches the block's output through "
              + name + ", whose backward reads that result; a recompute does not compute it (see EarlyStop)."
              + " Use lastMatmul only for the block's last matmul, followed by nothing but additions, dropout,"
              + " casts and reshapes, or use an ordinary matmul there.");
        }
      }
      known.put(address, onPath);
      return onPath;
    }
  }
}
