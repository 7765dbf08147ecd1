package io.bmtrain4j.autograd;

import org.bytedeco.javacpp.PointerScope;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import io.bmtrain4j.internal.Native;
import org.bytedeco.pytorch.AutoGradMode;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorTensorHook;
import org.bytedeco.pytorch.global.torch;

/**
 * Java's stand-in for {@code torch.autograd.Function}: wires values computed without autograd
 * into the graph so that the engine calls a Java backward for them.
 *
 * <p>[Note: hook wiring] The Bytedeco mapping cannot subclass an autograd node, so the wiring is
 * built from ordinary ops and tensor hooks:
 * <pre>
 *   anchor (scalar leaf) ----.
 *   proxy_i = input_i.alias() -> narrow(0,0,0).sum()  (exactly 0) --+--> s (0-dim, == 0)
 *   output_j' = output_j.index_add_(0, [], s) (in place, reads nothing) <--'
 * </pre>
 * In backward the engine reaches every {@code output_j'} before {@code s}, and {@code s} before
 * the anchor and the proxies. A hook on each {@code output_j'} records its gradient; the hook on
 * {@code s} then runs the Java backward once with all output gradients (one thread, whatever
 * devices the inputs live on), and each proxy's hook replaces the zero gradient flowing to its
 * input with the real one. The
 * engine then carries the input gradients on, in its own loop: no nested backward reaches outside
 * this function, so a chain of blocks costs no reentrant depth, and a tensor used both by this
 * function and elsewhere receives both contributions before its own producer runs.
 *
 * <p>Lifetime: the hooks are JavaCPP function pointers; the node keeps them reachable until all
 * of its input-side hooks have fired, and closes them at a later {@link #apply} (never inside a
 * running hook). A graph that is dropped without backward leaves its node registered; call
 * {@link #liveNodes()} to see how many. Graphs kept with {@code retain_graph} are not supported.
 *
 * <p>[Note: gradients freed as backward goes] The gradients a node records and returns are the
 * size of a block's activations. The recorded output gradients are closed as soon as the Java
 * backward has run. A returned input gradient must outlive its hook (the engine copies the
 * reference only after the hook returns), so it is closed when the next hook starts on the same
 * thread or at the next {@link #apply} on it (on CUDA the engine's device thread keeps its last
 * one until the next backward). Held until their node retired instead, they kept
 * two activations per block alive through the whole backward and one step into the next.
 */
public final class CustomBackward {
  private CustomBackward() {}

  /**
   * The Java backward: gradients of the outputs (null where none arrived) to gradients of the
   * inputs (null for none). It runs inside a PointerScope: what it creates dies with it, and the
   * returned gradients are copied first. A returned tensor it owns, or keeps elsewhere, stays its
   * own to close.
   */
  @FunctionalInterface
  public interface Backward {
    List<Tensor> apply(List<Tensor> gradOutputs);
  }

  private static final Set<Node> LIVE = Collections.synchronizedSet(Collections.newSetFromMap(new IdentityHashMap<>()));
  /** What a hook returns to leave a gradient unchanged: libtorch copies it, so one instance serves all. */
  private static final TensorBase UNDEFINED = Native.own(new TensorBase());
  private static final List<Node> RETIRED = Collections.synchronizedList(new ArrayList<>());
  /** Input gradients handed to the engine, by the thread whose hook returned them: see the Note. */
  private static final List<HandedOver> HANDED_OVER = new ArrayList<>();

  private record HandedOver(Thread thread, Tensor gradient) {}

  /** Input gradients handed over and not closed yet (for tests). */
  static int handedOverGradients() {
    synchronized (HANDED_OVER) {
      return HANDED_OVER.size();
    }
  }

  /** Keeps {@code g} alive until the hook returning it has returned. */
  private static void handOver(Tensor g) {
    synchronized (HANDED_OVER) {
      HANDED_OVER.add(new HandedOver(Thread.currentThread(), g));
    }
  }

  /**
   * Closes what earlier hooks handed over on this thread (they have all returned) and on finished
   * threads. Another live thread's are left alone: its last hook may have returned in Java while
   * libtorch has not yet copied the result (closing then lost a gradient when ranks ran as
   * threads). On CUDA an input gradient handed over on the engine's device thread is closed at
   * that thread's next hook, normally the same node's anchor hook (the engine runs it after the
   * proxies').
   */
  private static void closeHandedOver() {
    List<Tensor> done = new ArrayList<>();
    synchronized (HANDED_OVER) {
      HANDED_OVER.removeIf(h -> (h.thread == Thread.currentThread() || !h.thread.isAlive()) && done.add(h.gradient));
    }
    done.forEach(Tensor::close);
  }

  /** Nodes whose backward has not completed yet (for tests and leak checks). */
  public static int liveNodes() {
    return LIVE.size();
  }

  /**
   * Returns {@code outputs} wired into the graph: same values, same order; non-floating outputs
   * come back unchanged. {@code outputs} must have been computed without autograd (they are
   * modified in place where that is safe). {@code backward} runs once, when backward reaches
   * these outputs, even if no input requires grad (so parameters inside can get gradients).
   */
  public static List<Tensor> apply(List<Tensor> inputs, List<Tensor> outputs, Backward backward) {
    return apply(inputs, outputs, backward, true);
  }

  /**
   * As {@link #apply(List, List, Backward)}; with {@code inPlace} false the outputs are left
   * untouched and the wired ones are new tensors (one copy each), for outputs whose storage a
   * graph saved.
   */
  public static List<Tensor> apply(List<Tensor> inputs, List<Tensor> outputs, Backward backward, boolean inPlace) {
    closeRetired();
    Node node = new Node(backward, inputs.size(), outputs.size());
    List<Tensor> wired = new ArrayList<>(outputs.size());
    try (AutoGradMode grad = new AutoGradMode(true)) {
      Tensor device = firstFloating(outputs);
      Tensor anchor = torch.zeros(new long[] {1}, device == null ? new org.bytedeco.pytorch.TensorOptions() : device.options().dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Float)));
      anchor.requires_grad_(true);
      node.keep(Native.own(anchor));
      node.hook(anchor, node.inputSideHook(-1));
      Tensor zero = anchor.narrow(0, 0, 0).sum();
      for (int i = 0; i < inputs.size(); i++) {
        Tensor in = inputs.get(i);
        if (in == null || !in.requires_grad()) {
          continue;
        }
        Tensor proxy = in.alias();
        node.hook(proxy, node.inputSideHook(i));
        node.inputSideHooks++;
        zero = zero.add(exactZero(proxy));
      }
      // The Java backward runs in s's hook: once, on one thread, after every output's gradient
      // arrived and before any input-side hook (which only hands results over).
      node.hook(zero, node.backwardHook());
      for (int j = 0; j < outputs.size(); j++) {
        Tensor out = outputs.get(j);
        if (out == null || !out.defined() || !out.is_floating_point()) {
          wired.add(out);
          continue;
        }
        Tensor connected = inPlace && safeInPlace(out, inputs) ? connectInPlace(out, zero) : out.add(zero);
        node.hook(connected, node.outputHook(j));
        wired.add(connected);
      }
    }
    LIVE.add(node);
    return wired;
  }

  /**
   * {@code out} made to depend on {@code zero} without touching its elements: an in-place
   * {@code index_add_} of nothing (an empty index), whose backward passes the gradient through to
   * nothing and sends an empty slice's sum, 0, to {@code zero}. An {@code add_} of the scalar read
   * and wrote the whole output in forward (a slow broadcast kernel, ~0.13 ms per 1.3B block on an
   * H100) and reduced its whole gradient in backward.
   */
  private static Tensor connectInPlace(Tensor out, Tensor zero) {
    if (out.dim() == 0 || !out.device().str().getString().equals(zero.device().str().getString())) {
      return out.add_(zero);
    }
    long[] shape = out.sizes().vec().get();
    long[] emptyRows = shape.clone();
    emptyRows[0] = 0;
    long[] ones = new long[shape.length];
    java.util.Arrays.fill(ones, 1);
    Tensor nothing = torch.empty(new long[] {0}, out.options().dtype(new org.bytedeco.pytorch.ScalarTypeOptional(torch.ScalarType.Long)),
        new org.bytedeco.pytorch.MemoryFormatOptional());
    Tensor source = zero.to(out.scalar_type()).reshape(ones).expand(emptyRows);
    return out.index_add_(0, nothing, source);
  }

  /** A 0-dim tensor equal to 0 whatever {@code t} holds (no 0 * inf), whose gradient reaches {@code t}. */
  private static Tensor exactZero(Tensor t) {
    if (t.dim() == 0) {
      return t.reshape(1).narrow(0, 0, 0).sum();
    }
    return t.narrow(0, 0, 0).sum();
  }

  private static boolean safeInPlace(Tensor out, List<Tensor> inputs) {
    if (out.is_view() || out.requires_grad()) {
      return false;
    }
    for (Tensor in : inputs) {
      if (in != null && in.defined() && out.is_alias_of(in)) {
        return false;
      }
    }
    return true;
  }

  private static Tensor firstFloating(List<Tensor> outputs) {
    for (Tensor t : outputs) {
      if (t != null && t.defined() && t.is_floating_point()) {
        return t;
      }
    }
    return null;
  }

  private static String describe(Throwable e) {
    java.io.StringWriter w = new java.io.StringWriter();
    e.printStackTrace(new java.io.PrintWriter(w));
    String s = w.toString();
    return s.length() > 4000 ? s.substring(0, 4000) + "..." : s;
  }

  private static void closeRetired() {
    closeHandedOver();
    List<Node> done;
    synchronized (RETIRED) {
      if (RETIRED.isEmpty()) {
        return;
      }
      done = new ArrayList<>(RETIRED);
      RETIRED.clear();
    }
    for (Node n : done) {
      n.close();
    }
  }

  /** One application: the recorded output gradients, the computed input gradients, the hooks. */
  private static final class Node {
    private final Backward backward;
    private final Tensor[] gradOutputs;
    private Tensor[] gradInputs;
    private boolean ran;
    private int inputSideHooks = 1; // the anchor's
    private int inputSideFired;
    private final List<TensorTensorHook> hooks = new ArrayList<>();
    private final List<Tensor> kept = new ArrayList<>();

    Node(Backward backward, int inputs, int outputs) {
      this.backward = backward;
      this.gradOutputs = new Tensor[outputs];
      this.gradInputs = new Tensor[inputs];
    }

    void keep(Tensor t) {
      kept.add(t);
    }

    void hook(Tensor t, TensorTensorHook h) {
      hooks.add(Native.own(h));
      t.register_hook(h);
    }

    TensorTensorHook outputHook(int j) {
      return new TensorTensorHook() {
        @Override
        public TensorBase call(TensorBase grad) {
          // See [Note: scopes on the engine's thread]: the argument JavaCPP hands us is closed
          // here, and the copy we keep is owned, so nothing waits for the GC.
          closeHandedOver();
          try (PointerScope scope = new PointerScope()) {
            gradOutputs[j] = Native.own(new Tensor(grad));
          } catch (RuntimeException | Error e) {
            throw new IllegalStateException("recording an output gradient failed: " + describe(e), e);
          } finally {
            grad.close();
          }
          return UNDEFINED;
        }
      };
    }

    /** Hook of s: runs the Java backward. */
    TensorTensorHook backwardHook() {
      return new TensorTensorHook() {
        @Override
        public TensorBase call(TensorBase ignoredZero) {
          ignoredZero.close(); // see outputHook
          closeHandedOver();
          try {
            runOnce();
          } catch (RuntimeException | Error e) {
            // The stack trace does not survive the trip through libtorch's engine: put it in the message.
            throw new IllegalStateException("backward of a sharded block failed: " + describe(e), e);
          }
          return UNDEFINED;
        }
      };
    }

    /** Hook of the anchor (input -1) or of input i's proxy: hands the computed gradient over. */
    TensorTensorHook inputSideHook(int i) {
      return new TensorTensorHook() {
        @Override
        public TensorBase call(TensorBase ignoredZeros) {
          ignoredZeros.close(); // see outputHook
          closeHandedOver();
          Tensor g = i < 0 ? null : gradInputs[i];
          if (i >= 0) {
            gradInputs[i] = null;
          }
          if (g != null) {
            handOver(g); // the engine takes its own reference after we return
          }
          synchronized (Node.this) { // a two-device graph runs input-side hooks on two threads
            if (++inputSideFired == inputSideHooks) {
              LIVE.remove(Node.this);
              RETIRED.add(Node.this);
            }
          }
          return g == null || !g.defined() ? UNDEFINED : g;
        }
      };
    }

    private void runOnce() {
      if (ran) {
        return;
      }
      ran = true;
      List<Tensor> grads = Arrays.asList(gradOutputs.clone());
      Arrays.fill(gradOutputs, null);
      List<Tensor> result;
      try {
        result = runBackward(grads);
      } finally {
        Native.closeAll(grads); // recorded copies, no longer needed: see [Note: gradients freed as backward goes]
      }
      if (result != null) {
        if (result.size() != gradInputs.length) {
          Native.closeAll(result);
          throw new IllegalStateException(
              "custom backward returned " + result.size() + " gradients for " + gradInputs.length + " inputs");
        }
        for (int i = 0; i < gradInputs.length; i++) {
          gradInputs[i] = result.get(i);
        }
      }
    }

    /** Runs the Java backward in its own scope; returns owned copies of its gradients. */
    private List<Tensor> runBackward(List<Tensor> grads) {
      List<Tensor> result;
      // [Note: scopes on the engine's thread] On CUDA the engine runs hooks on its own device
      // thread, where no user PointerScope is open: without this scope every handle the backward
      // creates (views, in-place results) would keep its storage alive until the GC ran, a whole
      // block's gradient buffer per step. What must outlive the hook is owned (Native.own).
      try (PointerScope scope = new PointerScope()) {
        result = backward.apply(grads);
        if (result != null) {
          // The gradients outlive the scope: take owned handles, closed with the node. The
          // originals are left alone: those created during the backward die with the scope, and
          // any the backward kept from elsewhere stay its own.
          List<Tensor> owned = new ArrayList<>();
          for (Tensor r : result) {
            owned.add(r == null ? null : Native.own(new Tensor(r)));
          }
          result = owned;
        }
      }
      return result;
    }

    void close() {
      for (TensorTensorHook h : hooks) {
        h.close();
      }
      hooks.clear();
      for (Tensor t : kept) {
        t.close();
      }
      kept.clear();
      closeAll(gradOutputs); // recorded, but the backward never ran (graph dropped)
      closeAll(gradInputs); // computed, but never handed over
    }

    private static void closeAll(Tensor[] tensors) {
      Native.closeAll(Arrays.asList(tensors));
      Arrays.fill(tensors, null);
    }
  }
}
