package io.bmtrain4j.zero;

import io.bmtrain4j.autograd.CustomBackward;
import io.bmtrain4j.internal.Native;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import org.bytedeco.pytorch.AutoGradMode;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;

/**
 * Parts of a checkpointed block that cost more to recompute than to keep: under a
 * {@link ActivationMode#SELECTIVE} plan, their graphs are kept from forward to backward and the
 * recompute skips them.
 *
 * <p>[Note: selective recompute] A block's forward wraps the costly part (attention, whose time
 * grows with the square of the sequence while its saved tensors grow linearly) in {@link
 * #costly}. What happens depends on the block's mode in this step:
 * <ul>
 *   <li>not selective (or no backward): the part just runs;
 *   <li>selective, forward (without autograd): the part runs with autograd on detached copies of
 *       its inputs, and its graph and output are kept, with the RNG state after it. The inputs'
 *       values are freed: the recompute makes them again before it reaches the part;
 *   <li>selective, recompute: the part does not run. The recomputed inputs become the kept
 *       graph's inputs, the kept output is wired into the recomputed graph by a {@link
 *       CustomBackward} whose backward runs the kept graph and hands the inputs' gradients on,
 *       and the RNG state is set to what it was after the part in forward, so what follows draws
 *       the same numbers;
 *   <li>the activation budget's probe step: the part runs, and its time and held bytes are
 *       measured.
 * </ul>
 * The calls must be the same in forward and recompute (same parts, same order), as everything
 * else in a recomputed forward; a mismatch is an error that names the block. Nested sharded
 * modules do not see their caller's frame.
 */
public final class SelectiveRecompute {
  private SelectiveRecompute() {}

  private static final ThreadLocal<Frame> FRAME = new ThreadLocal<>();

  /**
   * {@code op(inputs)}, marked as costly to recompute: see [Note: selective recompute]. {@code op}
   * must compute from {@code inputs} (and constants) only: what it reads from elsewhere gets no
   * gradient from a kept graph.
   */
  public static Tensor costly(String name, Function<Tensor[], Tensor> op, Tensor... inputs) {
    Frame frame = FRAME.get();
    if (frame == null) {
      return op.apply(inputs);
    }
    return switch (frame.phase) {
      case KEEPING -> frame.keep(name, op, inputs);
      case REPLAYING -> frame.replay(name, inputs);
      case PROBING -> frame.measure(op, inputs);
    };
  }

  /** Hides the caller's frame (a nested sharded module runs its own parts as written). */
  static Frame suspend() {
    Frame f = FRAME.get();
    FRAME.remove();
    return f;
  }

  static void resume(Frame f) {
    if (f == null) {
      FRAME.remove();
    } else {
      FRAME.set(f);
    }
  }

  /** Runs {@code body} with {@code frame} current on this thread (null: none). */
  static <R> R within(Frame frame, java.util.function.Supplier<R> body) {
    Frame outer = FRAME.get();
    resume(frame);
    try {
      return body.get();
    } finally {
      resume(outer);
    }
  }

  enum Phase { KEEPING, REPLAYING, PROBING }

  /** A part's kept graph: the detached inputs it ran on, its output, the RNG state after it. */
  private record KeptPart(String name, List<Tensor> leaves, Tensor output, RngState after) {}

  /** One block call's costly parts: kept in forward, replayed in its recompute, or measured. */
  static final class Frame implements AutoCloseable {
    private Phase phase;
    private final String block;
    private final Device device;
    private final List<KeptPart> kept = new ArrayList<>();
    private int replayed;
    private final MemoryMeter meter;
    private long measuredBytes;
    private double measuredMillis;

    private Frame(Phase phase, String block, Device device, MemoryMeter meter) {
      this.phase = phase;
      this.block = block;
      this.device = device;
      this.meter = meter;
    }

    static Frame keeping(String block, Device device) {
      return new Frame(Phase.KEEPING, block, device, null);
    }

    static Frame probing(String block, MemoryMeter meter) {
      return new Frame(Phase.PROBING, block, null, meter);
    }

    /** The recompute's turn: parts are replayed from what forward kept, in order. */
    void startReplay() {
      phase = Phase.REPLAYING;
      replayed = 0;
    }

    boolean keptAny() {
      return !kept.isEmpty();
    }

    /** Bytes the measured parts held after running: outputs and what their graphs saved (probe only). */
    long measuredBytes() {
      return measuredBytes;
    }

    double measuredMillis() {
      return measuredMillis;
    }

    void checkAllReplayed() {
      if (replayed != kept.size()) {
        throw new IllegalStateException(block + ": the recompute marked " + replayed + " costly parts where forward marked "
            + kept.size() + "; a block's forward must call SelectiveRecompute.costly the same way every time");
      }
    }

    private Tensor keep(String name, Function<Tensor[], Tensor> op, Tensor[] inputs) {
      Tensor[] leaves = new Tensor[inputs.length];
      List<Tensor> owned = new ArrayList<>();
      for (int i = 0; i < inputs.length; i++) {
        Tensor in = inputs[i];
        if (in != null && in.defined()) {
          Tensor leaf = in.detach();
          if (leaf.is_floating_point()) {
            leaf.requires_grad_(true);
          }
          leaves[i] = leaf;
        }
        owned.add(leaves[i] == null ? null : Native.own(leaves[i]));
      }
      Tensor output;
      try (AutoGradMode grad = new AutoGradMode(true)) {
        output = Native.own(op.apply(leaves));
      }
      // The inputs are recomputed anyway (they come before the part): free their values now and
      // hand the recomputed ones to the kept graph in replay. What the graph saved of a leaf is
      // the leaf itself, which then reads the new values; a view it saved (libtorch's math
      // attention saves transposes) keeps the old storage alive, correct but not freed.
      for (Tensor leaf : owned) {
        // An input the part returns as it is stays: the output is its value.
        if (leaf != null && leaf.requires_grad() && !leaf.is_same(output)) {
          try (Tensor none = torch.empty(new long[] {0}, leaf.options(), new org.bytedeco.pytorch.MemoryFormatOptional())) {
            leaf.set_data(none);
          }
        }
      }
      kept.add(new KeptPart(name, owned, output, RngState.capture(device)));
      return output.detach();
    }

    private Tensor replay(String name, Tensor[] inputs) {
      if (replayed >= kept.size()) {
        throw new IllegalStateException(block + ": the recompute reached costly part '" + name + "' beyond the "
            + kept.size() + " forward kept; a block's forward must call SelectiveRecompute.costly the same way every time");
      }
      KeptPart part = kept.get(replayed++);
      if (!part.name.equals(name)) {
        throw new IllegalStateException(block + ": the recompute reached costly part '" + name + "' where forward kept '"
            + part.name + "'; a block's forward must call SelectiveRecompute.costly the same way every time");
      }
      part.after.restore();
      for (int i = 0; i < inputs.length; i++) {
        Tensor leaf = part.leaves.get(i);
        if (leaf != null && leaf.requires_grad()) {
          leaf.set_data(inputs[i].detach()); // the recomputed input: the values forward had
        }
      }
      List<Tensor> in = new ArrayList<>(List.of(inputs));
      // The value handed on is the kept output's storage under a version counter of its own
      // (variable_data, not detach, which shares the counter), wired in place: the kept graph saved
      // that output (attention's backward reads it), and a copy or an add of zero to wire it cost
      // a read and write of it per block and a reduction of its gradient. The Java backward runs
      // the kept graph, once, and passes the inputs' gradients on.
      return CustomBackward.apply(in, List.of(part.output.variable_data()), grads -> backward(part, grads), true).get(0);
    }

    /**
     * Runs the kept graph once and returns its inputs' gradients. {@code torch::autograd::grad}
     * hands them over as computed: no AccumulateGrad into the leaves' {@code .grad}, which copies
     * a gradient whose layout differs from its leaf's (attention's q, k and v are strided views).
     */
    private static List<Tensor> backward(KeptPart part, List<Tensor> gradOutputs) {
      Tensor g = gradOutputs.get(0);
      List<Tensor> out = new ArrayList<>();
      List<Integer> wanted = new ArrayList<>();
      for (int i = 0; i < part.leaves.size(); i++) {
        Tensor leaf = part.leaves.get(i);
        out.add(null);
        if (leaf != null && leaf.requires_grad()) {
          wanted.add(i);
        }
      }
      if (g == null || !g.defined() || !part.output.requires_grad() || wanted.isEmpty()) {
        return out;
      }
      try (TensorVector roots = new TensorVector(part.output); TensorVector grads = new TensorVector(g);
          TensorVector inputs = new TensorVector(); BoolOptional retain = new BoolOptional(false)) {
        for (int i : wanted) {
          inputs.push_back(part.leaves.get(i));
        }
        try (TensorVector result = torch.grad(roots, inputs, grads, retain, false, true)) {
          for (int k = 0; k < wanted.size(); k++) {
            Tensor r = result.get(k); // an element of the vector, gone with it: a handle of our own if defined
            out.set(wanted.get(k), r.defined() ? new Tensor(r) : null);
          }
        }
      }
      return out;
    }

    private Tensor measure(Function<Tensor[], Tensor> op, Tensor[] inputs) {
      long before = meter.allocated();
      long start = System.nanoTime();
      Tensor out = op.apply(inputs);
      long after = meter.allocated(); // synchronises a GPU: the time below is the part's
      measuredMillis += (System.nanoTime() - start) / 1e6;
      measuredBytes += Math.max(0, after - before); // its inputs are recomputed, not kept
      return out;
    }

    @Override
    public void close() {
      for (KeptPart p : kept) {
        Native.closeAll(p.leaves);
        p.output.close();
        p.after.close();
      }
      kept.clear();
    }
  }
}
