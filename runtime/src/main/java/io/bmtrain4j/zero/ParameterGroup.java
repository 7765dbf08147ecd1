package io.bmtrain4j.zero;

import io.bmtrain4j.dist.CollectiveHandle;
import io.bmtrain4j.dist.Communicator;
import io.bmtrain4j.dist.ReduceOperation;
import io.bmtrain4j.internal.Native;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The parameters of one module instance (a block), packed BMTrain-style into one flat, padded,
 * evenly partitioned buffer: one all-gather makes every parameter whole, one reduce-scatter
 * delivers every gradient.
 *
 * <p>[Note: persistent parameter tensors] The user's fields keep pointing at the same libtorch
 * tensors for the model's whole life. The group only swaps their storage ({@code set_data}):
 * while {@link GroupState#GATHERED} each is a view into the gathered buffer, otherwise an empty
 * tensor. Autograd's saved references to a parameter therefore see the re-gathered storage in
 * backward, and {@code requires_grad} toggled by the user stays where they put it.
 *
 * <p>[Note: gradients land in the flat buffer] One reduce-scatter of {@link #gradFlat} serves the
 * whole group. The parameters start a backward with no {@code .grad}, so autograd hands over its
 * freshly computed gradient (and adds later contributions to it: a tied embedding and LM head, or
 * micro-batches accumulated in a standalone module), and {@link #collectGradients()} copies each
 * into the flat buffer once, as FSDP2 copies into its reduce-scatter input. A checkpointed block
 * collects at the end of its own backward; a standalone module (the root) when backward is
 * finished, so its flat buffer does not exist through the loss, where memory peaks (pointing
 * {@code .grad} at views of a flat buffer allocated in forward cost 0.4 GiB there at 6.7B).
 *
 * <p>[Note: a shard the optimizer can rebuild] With fp32 master weights, the low-precision shard
 * is a rounded copy of them, needed only while gathering. Once one optimizer owns a block's shard
 * ({@link #offerShardSource}) and has said it equals the masters' rounding ({@link
 * #refreshFromSource()}), the group frees the shard's storage whenever a gather is done with it
 * and rebuilds it (one rounding cast) at the next gather. The shard then costs no memory through
 * forward and backward, where the peak is: FSDP2 keeps only fp32 shards and casts at each gather
 * the same way. The shard tensor keeps its identity throughout (0 elements while freed).
 * {@link #readShard()} rebuilds it for reading; {@link #shard()} for writing, counted in
 * {@link #shardWrites()}: any optimizer with masters over the block then takes every element that
 * differs from its master's rounding into the master before its next step or state save, so a
 * write is never undone. A block two optimizers update, or one an optimizer
 * updates in place ({@link #keepShard()}), keeps its shard. Writes into the gathered parameters
 * themselves never reach the shard, at any world size: a world of one gathers into the shard,
 * but a rebuilt one is freed at release.
 */
public final class ParameterGroup {
  private final String owner;
  private final Communicator comm;
  private final List<Member> members;
  private final long numel;
  private final long shardNumel;
  private final Tensor shard; // 0 elements while freed: see [Note: a shard the optimizer can rebuild]
  private boolean resident = true;
  private boolean shardKept;
  private long shardWrites;
  private final torch.ScalarType dtype;
  private final org.bytedeco.pytorch.TensorOptions shardOptions;
  private final org.bytedeco.pytorch.Device device;
  private ShardSource source;
  private long shardWritesAtRefresh = -1; // the write count when the shard last equalled its source; -1: never
  private final Tensor released;
  private Tensor shardGrad;
  private Tensor gathered;
  private CollectiveHandle gatherHandle;
  private Tensor gradFlat;
  private GroupState state = GroupState.SHARDED;

  /** One parameter of the group: its place in the flat buffer and the user's tensor. */
  public static final class Member {
    final String name;
    final Tensor tensor;
    final long[] shape;
    final long offset;
    final long numel;
    private io.bmtrain4j.init.Initializer deferred;

    Member(String name, Tensor tensor, long[] shape, long offset, long numel, io.bmtrain4j.init.Initializer deferred) {
      this.name = name;
      this.tensor = tensor;
      this.shape = shape;
      this.offset = offset;
      this.numel = numel;
      this.deferred = deferred;
    }

    /** The initializer still to run ({@code Bmt.initParameters}), or null once the values are set. */
    public io.bmtrain4j.init.Initializer deferredInitializer() {
      return deferred;
    }

    public void markInitialised() {
      deferred = null;
    }

    public String name() {
      return name;
    }

    public long[] shape() {
      return shape.clone();
    }

    public long numel() {
      return numel;
    }

    /** Where this parameter starts in the group's flat buffer. */
    public long offset() {
      return offset;
    }

    public boolean requiresGrad() {
      return tensor.requires_grad();
    }
  }

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
    List<Member> ms = new ArrayList<>();
    long offset = 0;
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
      long n = p.numel();
      ms.add(new Member(names.get(i), p, p.sizes().vec().get(), offset, n, io.bmtrain4j.init.DeferredParameters.take(p)));
      offset += n;
    }
    this.members = Collections.unmodifiableList(ms);
    this.numel = offset;
    int world = comm.worldSize();
    this.shardNumel = Math.max(1, (numel + world - 1) / world);
    // Each rank copies into its shard only the part of each parameter that falls there: no
    // whole-block buffer is ever allocated. The scope frees the temporary views at once.
    try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      this.shardOptions = Native.own(first.options());
      this.device = Native.own(first.device());
      this.dtype = first.scalar_type();
      this.shard = Native.own(torch.zeros(new long[] {shardNumel}, shardOptions));
      for (Member m : members) {
        Overlap o = overlap(m, comm.rank());
        // A deferred parameter's storage is never touched: see DeferredParameters.
        if (!o.isEmpty() && m.deferred == null) {
          shard.narrow(0, o.offsetInShard(), o.length()).copy_(m.tensor.reshape(-1).narrow(0, o.offsetInParameter(), o.length()));
        }
      }
      // [Note: released placeholder] A released parameter is an empty tensor of its dtype (libtorch
      // refuses set_data to another dtype on a tensor that requires grad). Ops with whole tensors
      // then fail on its size 0; ShardedModuleRuntime#explainReleased names the fields.
      this.released = Native.own(torch.empty(new long[] {0}, first.options(), new MemoryFormatOptional()));
    }
    for (Member m : members) {
      m.tensor.set_data(released);
    }
  }

  /** Where rank {@code rank}'s shard meets parameter {@code m}. */
  public Overlap overlap(Member m, int rank) {
    long shardBegin = shardNumel * rank;
    long begin = Math.max(shardBegin, m.offset);
    long end = Math.min(shardBegin + shardNumel, m.offset + m.numel);
    return end <= begin ? Overlap.NONE : new Overlap(begin - m.offset, begin - shardBegin, end - begin);
  }

  /** How many parameter elements (padding excluded) this rank's shard holds. */
  public long parameterElementsOnThisRank() {
    long n = 0;
    for (Member m : members) {
      n += overlap(m, comm.rank()).length();
    }
    return n;
  }

  public String owner() {
    return owner;
  }

  public List<Member> members() {
    return members;
  }

  public GroupState state() {
    return state;
  }

  /** Elements of all parameters, without padding. */
  public long numel() {
    return numel;
  }

  public long shardNumel() {
    return shardNumel;
  }

  /**
   * This rank's slice of the flat buffer, for writing: what an optimizer without masters updates
   * in place, and what loaders fill. Rebuilt first if it was freed; the same tensor object for
   * the group's whole life (a freed shard has 0 elements until the next gather or call). A block
   * rebuilt from an optimizer's masters takes what was written here into them at that optimizer's
   * next step. Use {@link #readShard()} to read.
   */
  public Tensor shard() {
    ensureShard();
    shardWrites++;
    return shard;
  }

  /** How many times the shard was handed out for writing ({@link #shard()}): optimizers with masters compare it. */
  public long shardWrites() {
    return shardWrites;
  }

  /** The shard for reading only (rebuilt if it was freed): valid until the next optimizer step. */
  public Tensor readShard() {
    ensureShard();
    return shard;
  }

  /** The device the parameters live on. */
  public org.bytedeco.pytorch.Device device() {
    return device;
  }

  /** The parameters' dtype. */
  public torch.ScalarType dtype() {
    return dtype;
  }

  /** Whether the shard equals its source's rounding (set by {@link #refreshFromSource()}, cleared by {@link #shard()}). */
  public boolean shardMatchesSource() {
    return shardWritesAtRefresh == shardWrites;
  }

  /** Whether the low-precision shard is held now (false while freed, see the Note). */
  public boolean shardResident() {
    return resident;
  }

  /** Writes the parameters' current values, rounded to the shard's dtype, into a whole shard. */
  @FunctionalInterface
  public interface ShardSource {
    void restoreInto(Tensor shard);
  }

  /**
   * Offers where the shard can be rebuilt from (an optimizer's masters, covering every element
   * of it); returns whether the group took it. Only one optimizer may own a block's shard: a
   * second offer, or a block another optimizer updates in place ({@link #keepShard()}), turns
   * rebuilding off for good, so each optimizer's updates land in the shard as before.
   */
  public boolean offerShardSource(ShardSource offered) {
    if (shardKept) {
      return false;
    }
    if (source != null) {
      keepShard();
      return false;
    }
    source = offered;
    shardWritesAtRefresh = -1;
    return true;
  }

  /** Whether {@code candidate} is the registered source (an optimizer asks before relying on it). */
  public boolean rebuiltFrom(ShardSource candidate) {
    return source == candidate;
  }

  /** The shard is never freed from now on (rebuilt first if it was); any source is dropped. */
  public void keepShard() {
    ensureShard();
    source = null;
    shardKept = true;
  }

  /** Withdraws {@code owner}'s source (an optimizer closing): the shard is rebuilt and kept until another offer. */
  public void withdrawShardSource(ShardSource owner) {
    if (source == owner) {
      ensureShard();
      source = null;
      shardWritesAtRefresh = -1;
    }
  }

  /**
   * Called by the optimizer after it updated the source: the shard is stale. It is freed now, to
   * be rebuilt at the next gather, or rewritten at once if the parameters are gathered from it.
   */
  public void refreshFromSource() {
    if (source == null) {
      throw new IllegalStateException(owner + ": no shard source registered");
    }
    if (state == GroupState.GATHERING) {
      release(); // an unconsumed prefetch may still be reading the shard: complete it first
    }
    if (resident && gathered == shard) {
      restore(shard); // a world of one with the parameters viewing the shard: update in place
    } else {
      freeShard();
    }
    shardWritesAtRefresh = shardWrites;
  }

  private void ensureShard() {
    if (!resident) {
      try (PointerScope scope = new PointerScope()) {
        shard.resize_(shardNumel); // new storage; the tensor object (and every handle to it) stays
      }
      restore(shard);
      resident = true;
    }
  }

  private void restore(Tensor into) {
    try (PointerScope scope = new PointerScope(); NoGradGuard noGrad = new NoGradGuard()) {
      if (numel < shardNumel * (comm.rank() + 1)) { // this rank's shard ends in padding
        into.zero_();
      }
      source.restoreInto(into);
    }
  }

  /** Frees the shard if the source can rebuild it and nothing uses it now. */
  private void evictIfRebuildable() {
    if (source != null && shardMatchesSource()) {
      freeShard();
    }
  }

  /** Gives the shard's storage back (the tensor keeps its identity, with 0 elements). */
  private void freeShard() {
    if (resident && gathered != shard) {
      try (PointerScope scope = new PointerScope()) {
        shard.set_(torch.empty(new long[] {0}, shardOptions, new MemoryFormatOptional()).storage());
      }
      resident = false;
    }
  }

  /** This rank's slice of the averaged gradient, or null before the first reduction. */
  public Tensor shardGrad() {
    return shardGrad;
  }

  public Communicator communicator() {
    return comm;
  }

  boolean anyRequiresGrad() {
    for (Member m : members) {
      if (m.requiresGrad()) {
        return true;
      }
    }
    return false;
  }

  /** Starts the all-gather (SHARDED -> GATHERING) unless one is in flight or done. */
  public void prefetch() {
    if (state != GroupState.SHARDED) {
      return;
    }
    for (Member m : members) {
      if (m.deferred != null) {
        throw new IllegalStateException(owner + "." + m.name + " was declared with Bmt.parameter(...) and has no"
            + " values yet: call Bmt.initParameters(model) after constructing the model");
      }
    }
    state.checkTransition(GroupState.GATHERING, owner);
    ensureShard();
    if (comm.worldSize() == 1) {
      // [Note: world of one] The shard is the whole buffer: gather and reduce-scatter are the
      // identity, so the parameters view the shard itself and no copy is made.
      gathered = shard;
      gatherHandle = CollectiveHandle.completed();
    } else {
      gathered = Native.own(torch.empty(new long[] {shardNumel * comm.worldSize()}, shardOptions, new MemoryFormatOptional()));
      gatherHandle = comm.allGather(gathered, shard);
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
    // optimizer can rebuild it. A world of one gathers into the shard itself: freed at release.
    evictIfRebuildable();
    state.checkTransition(GroupState.GATHERED, owner);
    // The views are temporaries (set_data keeps its own reference): scoped, so no stray handle
    // keeps the gathered buffer alive after release, whichever thread runs this.
    try (PointerScope views = new PointerScope(); NoGradGuard noGrad = new NoGradGuard()) {
      for (Member m : members) {
        m.tensor.set_data(gathered.narrow(0, m.offset, m.numel).view(m.shape));
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
    for (Member m : members) {
      m.tensor.set_data(released);
    }
    if (gathered != shard) {
      gathered.close();
    }
    gathered = null;
    state = GroupState.SHARDED;
    evictIfRebuildable();
  }

  /**
   * Moves the gradients one backward left in the parameters' {@code .grad} into {@link #gradFlat}
   * (allocated on first use; added to a buffer already collecting) and unsets {@code .grad}, so
   * the next backward starts fresh again. A parameter without a gradient (frozen, or unused by
   * this call) contributes zeros. See [Note: gradients land in the flat buffer].
   */
  public void collectGradients() {
    boolean fresh = gradFlat == null;
    long padded = shardNumel * comm.worldSize();
    if (fresh) {
      gradFlat = Native.own(torch.empty(new long[] {padded}, shardOptions, new MemoryFormatOptional()));
    }
    try (PointerScope handles = new PointerScope(); NoGradGuard noGrad = new NoGradGuard()) {
      if (fresh && padded > numel) {
        gradFlat.narrow(0, numel, padded - numel).zero_();
      }
      for (Member m : members) {
        Tensor region = gradFlat.narrow(0, m.offset, m.numel);
        Tensor g = m.tensor.grad();
        if (g.defined()) {
          Tensor flat = g.reshape(-1);
          if (fresh) {
            region.copy_(flat);
          } else {
            region.add_(flat);
          }
          m.tensor.mutable_grad().put(new Tensor());
        } else if (fresh) {
          region.zero_();
        }
      }
    }
  }

  /** Unsets every parameter's {@code .grad} (a block's backward then starts fresh). */
  public void clearGradients() {
    try (PointerScope handles = new PointerScope()) {
      for (Member m : members) {
        m.tensor.mutable_grad().put(new Tensor());
      }
    }
  }

  public boolean collectingGradients() {
    return gradFlat != null;
  }

  /**
   * Detaches the parameters' {@code .grad} from the flat buffer and starts its reduce-scatter into
   * this rank's shard gradient. The returned reduction must be completed before the next one of
   * this group starts.
   */
  public PendingReduction reduceGradients() {
    if (gradFlat == null) {
      return null;
    }
    clearGradients();
    Tensor flat = gradFlat;
    gradFlat = null;
    if (comm.worldSize() == 1) {
      return new PendingReduction(this, CollectiveHandle.completed(), null, flat); // see [Note: world of one]
    }
    Tensor out = Native.own(torch.empty(new long[] {shardNumel}, shardOptions, new MemoryFormatOptional()));
    CollectiveHandle handle = comm.reduceScatter(out, flat, ReduceOperation.SUM);
    return new PendingReduction(this, handle, flat, out);
  }

  /** Called by {@link PendingReduction#complete()}: averages over ranks, as BMTrain does. */
  void accumulateShardGrad(Tensor reduced) {
    // In-place ops hand back new handles to the same tensor: scoped, so they pin nothing.
    try (PointerScope handles = new PointerScope()) {
      if (comm.worldSize() > 1) {
        reduced.div_(new Scalar((double) comm.worldSize()));
      }
      if (shardGrad == null) {
        shardGrad = reduced;
      } else {
        shardGrad.add_(reduced);
        reduced.close();
      }
    }
  }

  /**
   * Drops the shard gradient (the optimizer's zero_grad), and zeroes gradients collected in the
   * flat buffer but not yet reduced, so nothing from before reaches the next reduction.
   */
  public void zeroShardGrad() {
    if (shardGrad != null) {
      shardGrad.close();
      shardGrad = null;
    }
    if (gradFlat != null) {
      gradFlat.zero_();
    }
    clearGradients(); // and what autograd left in .grad, not collected yet (a standalone module's)
  }

  /** Bytes of this rank's shard (0 while freed), of its gradient storage (shard and flat) and of gathered storage. */
  public long[] memoryBytes() {
    long elem = torch.elementSize(dtype);
    long grads = (shardGrad == null ? 0 : shardNumel) + (gradFlat == null ? 0 : gradFlat.numel());
    long gath = gathered == null || gathered == shard ? 0 : gathered.numel();
    return new long[] {resident ? shardNumel * elem : 0, grads * elem, gath * elem};
  }
}
