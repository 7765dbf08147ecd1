package io.bmtrain4j.zero;

import io.bmtrain4j.dist.CollectiveHandle;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.init.DeferredParameters;
import io.bmtrain4j.init.Initializer;
import io.bmtrain4j.internal.Native;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The parameters of one module instance (a block), packed into one flat buffer ({@link
 * FlatLayout}): one all-gather makes every parameter whole, one reduce-scatter delivers every
 * gradient. The group owns the gather and its state ({@link GroupState}); this rank's values
 * live in its {@link LocalShard}, its gradients in its {@link BlockGradients}.
 *
 * <p>[Note: persistent parameter tensors] The user's fields keep pointing at the same libtorch
 * tensors for the model's whole life. The group only swaps their storage ({@code set_data}):
 * while {@link GroupState#GATHERED} each is a view into the gathered buffer, otherwise an empty
 * tensor. Autograd's saved references to a parameter therefore see the re-gathered storage in
 * backward, and {@code requires_grad} toggled by the user stays where they put it. Writes into
 * the gathered parameters never reach the shard, at any world size.
 */
public final class ParameterGroup {
  private final String owner;
  private final Communicator comm;
  private final FlatLayout layout;
  private final LocalShard shard;
  private final BlockGradients gradients;
  private final torch.ScalarType dtype;
  private final org.bytedeco.pytorch.TensorOptions options;
  private final org.bytedeco.pytorch.Device device;
  private final Tensor released;
  private Tensor gathered;
  private CollectiveHandle gatherHandle;
  private GroupState state = GroupState.SHARDED;

  /**
   * Packs {@code params} (name, whole tensor, identical on every rank) and keeps only this rank's
   * shard. The tensors are left pointing at an empty buffer.
   */
  public ParameterGroup(String owner, Communicator comm, List<String> names, List<Tensor> params) {
    if (params.isEmpty()) {
      throw new IllegalArgumentException(owner + ": a parameter group needs at least one parameter");
    }
    this.owner = owner;
    this.comm = comm;
    Tensor first = params.get(0);
    List<Initializer> deferred = new ArrayList<>();
    for (int i = 0; i < params.size(); i++) {
      Tensor p = params.get(i);
      if (p == null || !p.defined()) {
        throw new IllegalStateException(
            owner + "." + names.get(i) + " is null or undefined when the sharded class is constructed:"
                + " assign it in the constructor of the annotated class");
      }
      if (p.scalar_type().value != first.scalar_type().value || !p.device().str().getString().equals(first.device().str().getString())) {
        throw new IllegalArgumentException(
            owner + "." + names.get(i) + " is " + p.scalar_type() + " on " + p.device().str().getString()
                + " but " + owner + "." + names.get(0) + " is " + first.scalar_type() + " on "
                + first.device().str().getString() + ": all parameters of one block must share dtype and device");
      }
      deferred.add(DeferredParameters.take(p));
    }
    this.layout = new FlatLayout(names, params, deferred, comm.worldSize(), comm.rank());
    // Each rank copies into its shard only the part of each parameter that falls there: no
    // whole-block buffer is ever allocated. The scope frees the temporary views at once.
    try (PointerScope scope = new PointerScope(); NoGradGuard noGrad = new NoGradGuard()) {
      this.options = Native.own(first.options());
      this.device = Native.own(first.device());
      this.dtype = first.scalar_type();
      this.shard = new LocalShard(owner, layout, options);
      this.gradients = new BlockGradients(layout, comm, options, torch.elementSize(dtype));
      Tensor values = shard.forReading(); // the first values: no keeper holds them yet
      for (FlatLayout.Member m : layout.members()) {
        Overlap o = layout.overlap(m);
        // A deferred parameter's storage is never touched: see DeferredParameters.
        if (!o.isEmpty() && m.deferredInitializer() == null) {
          values.narrow(0, o.offsetInShard(), o.length()).copy_(m.tensor.reshape(-1).narrow(0, o.offsetInParameter(), o.length()));
        }
      }
      // [Note: released placeholder] A released parameter is an empty tensor of its dtype (libtorch
      // refuses set_data to another dtype on a tensor that requires grad). Ops with whole tensors
      // then fail on its size 0; ShardedModuleRuntime#explainReleased names the fields.
      this.released = Native.own(torch.empty(new long[] {0}, first.options(), new MemoryFormatOptional()));
    }
    for (FlatLayout.Member m : layout.members()) {
      m.tensor.set_data(released);
    }
  }

  public String owner() {
    return owner;
  }

  public FlatLayout layout() {
    return layout;
  }

  public List<FlatLayout.Member> members() {
    return layout.members();
  }

  /** This rank's shard: its values between gathers, and who keeps them. */
  public LocalShard shard() {
    return shard;
  }

  /** The block's gradients: collection, reduction, and this rank's averaged shard gradient. */
  public BlockGradients gradients() {
    return gradients;
  }

  /** This rank's slice of the averaged gradient, or null before the first reduction. */
  public Tensor shardGrad() {
    return gradients.shardGrad();
  }

  public GroupState state() {
    return state;
  }

  /** Elements of all parameters, without padding. */
  public long numel() {
    return layout.numel();
  }

  public long shardNumel() {
    return layout.shardNumel();
  }

  /** The device the parameters live on. */
  public org.bytedeco.pytorch.Device device() {
    return device;
  }

  /** The parameters' dtype. */
  public torch.ScalarType dtype() {
    return dtype;
  }

  public Communicator communicator() {
    return comm;
  }

  boolean anyRequiresGrad() {
    for (FlatLayout.Member m : layout.members()) {
      if (m.requiresGrad()) {
        return true;
      }
    }
    return false;
  }

  /**
   * The shard's source changed (an optimizer step or load): an unconsumed prefetch may still be
   * reading the shard, so it is completed first; then the shard goes stale (see {@link LocalShard}).
   */
  public void shardSourceUpdated() {
    if (state == GroupState.GATHERING) {
      release();
    }
    shard.sourceUpdated();
  }

  /** Starts the all-gather (SHARDED -> GATHERING) unless one is in flight or done. */
  public void prefetch() {
    if (state != GroupState.SHARDED) {
      return;
    }
    for (FlatLayout.Member m : layout.members()) {
      if (m.deferredInitializer() != null) {
        throw new IllegalStateException(owner + "." + m.name() + " was declared with Bmt.parameter(...) and has no"
            + " values yet: call Bmt.initParameters(model) after constructing the model");
      }
    }
    state.checkTransition(GroupState.GATHERING, owner);
    if (comm.worldSize() == 1) {
      // [Note: world of one] The shard is the whole buffer: gather and reduce-scatter are the
      // identity, so the parameters view the shard itself and no copy is made.
      gathered = shard.lendToParameters();
      gatherHandle = CollectiveHandle.completed();
    } else {
      Tensor input = shard.forReading();
      gathered = Native.own(torch.empty(new long[] {layout.paddedNumel()}, options, new MemoryFormatOptional()));
      gatherHandle = comm.allGather(gathered, input);
    }
    state = GroupState.GATHERING;
  }

  /** Makes every parameter whole: waits for (or starts) the all-gather and binds the views. */
  public void gather() {
    prefetch();
    if (state == GroupState.GATHERED) {
      return;
    }
    gatherHandle.await();
    gatherHandle = null;
    // The all-gather has read the shard (later work on this stream waits for it): free it if the
    // optimizer can rebuild it.
    shard.freeIfRebuildable();
    state.checkTransition(GroupState.GATHERED, owner);
    // The views are temporaries (set_data keeps its own reference): scoped, so no stray handle
    // keeps the gathered buffer alive after release, whichever thread runs this.
    try (PointerScope views = new PointerScope(); NoGradGuard noGrad = new NoGradGuard()) {
      for (FlatLayout.Member m : layout.members()) {
        m.tensor.set_data(gathered.narrow(0, m.offset(), m.numel()).view(m.shape()));
      }
    }
    state = GroupState.GATHERED;
  }

  /** Frees the gathered buffer (GATHERED -> SHARDED); a pending prefetch is completed first. */
  public void release() {
    if (state == GroupState.SHARDED) {
      return;
    }
    if (state == GroupState.GATHERING) {
      gather();
    }
    state.checkTransition(GroupState.SHARDED, owner);
    for (FlatLayout.Member m : layout.members()) {
      m.tensor.set_data(released);
    }
    if (comm.worldSize() == 1) {
      shard.returnFromParameters();
    } else {
      gathered.close();
    }
    gathered = null;
    state = GroupState.SHARDED;
    shard.freeIfRebuildable();
  }

  /** What this group holds now: its shard (0 while freed), gradient storage and gathered buffer. */
  public HeldMemory heldMemory() {
    long gath = gathered == null || comm.worldSize() == 1 ? 0 : gathered.numel() * torch.elementSize(dtype);
    return new HeldMemory(shard.residentBytes(), gradients.bytes(), gath, layout.numel(), device.is_cuda());
  }
}
