package io.bmtrain4j.zero;

import io.bmtrain4j.internal.Native;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * This rank's shard of a block's flat buffer: the values the rank owns between gathers, and who
 * keeps them.
 *
 * <p>[Note: a shard the optimizer can rebuild] With fp32 master weights, the low-precision shard
 * is a rounded copy of them, needed only while gathering. Once one optimizer keeps a block's
 * values ({@link Keeper#SOURCE}, see {@link #offerSource}) and has said the shard equals the
 * masters' rounding ({@link #sourceUpdated}), the shard's storage is freed whenever a gather is
 * done with it ({@link Residency#FREED}) and rebuilt (one rounding cast) when it is next read.
 * It then costs no memory through forward and backward, where the peak is: FSDP2 keeps only fp32
 * shards and casts at each gather the same way. The tensor object keeps its identity throughout
 * (0 elements while freed), so every handle to it stays valid.
 *
 * <p>[Note: writes into the shard] Access says what it is for. {@link #forReading()} and
 * {@link #forOptimizerUpdate()} (an optimizer writing the update its own state already holds)
 * leave the {@link #version()} alone; {@link #forWriting()} (loaders, initialisers, users,
 * another optimizer) advances it. An optimizer with masters over the block compares the version
 * with the one its masters last reflected, and if it moved takes every element that differs from
 * its masters' rounding into the masters before its next step or state save: a write is never
 * undone by a rebuild. A block two optimizers keep, or one an optimizer updates in place, is
 * {@link Keeper#PINNED}: never freed.
 */
public final class LocalShard {
  /** Whether the shard's storage is held now. */
  public enum Residency {
    RESIDENT,
    /** Storage given back; rebuilt from the source at the next read or gather. */
    FREED
  }

  /** Who keeps the block's values on this rank between gathers. */
  public enum Keeper {
    /** The shard itself (no optimizer has offered to rebuild it yet). */
    SHARD,
    /** An optimizer's masters: the shard is freed between gathers once it matches them. */
    SOURCE,
    /** The shard, for good: two optimizers keep the block, or one updates it in place. */
    PINNED
  }

  /** Writes the parameters' current values, rounded to the shard's dtype, into a whole shard. */
  @FunctionalInterface
  public interface ShardSource {
    void restoreInto(Tensor shard);
  }

  private final String owner;
  private final FlatLayout layout;
  private final TensorOptions options;
  private final Tensor tensor; // 0 elements while FREED
  private Residency residency = Residency.RESIDENT;
  private Keeper keeper = Keeper.SHARD;
  private ShardSource source;
  private long version;
  private long versionAtSourceUpdate = -1; // -1: the source has not matched the shard yet
  private boolean lentToParameters; // a world of one: the parameters view the shard itself

  LocalShard(String owner, FlatLayout layout, TensorOptions options) {
    this.owner = owner;
    this.layout = layout;
    this.options = Native.own(options);
    this.tensor = Native.own(torch.zeros(new long[] {layout.shardNumel()}, options));
  }

  /** The shard for reading only (rebuilt if it was freed): valid until the next optimizer step. */
  public Tensor forReading() {
    ensureResident();
    return tensor;
  }

  /** The shard for writing values its keeper does not hold yet (loaders, initialisers, users): advances the version. */
  public Tensor forWriting() {
    ensureResident();
    version++;
    return tensor;
  }

  /** The shard for an optimizer writing the update its own state already holds: the version stays. */
  public Tensor forOptimizerUpdate() {
    ensureResident();
    return tensor;
  }

  /** How many times the shard was handed out {@link #forWriting()}. */
  public long version() {
    return version;
  }

  public Residency residency() {
    return residency;
  }

  public Keeper keeper() {
    return keeper;
  }

  /** Whether the shard equals its source's rounding (since {@link #sourceUpdated}, no write). */
  public boolean matchesSource() {
    return keeper == Keeper.SOURCE && versionAtSourceUpdate == version;
  }

  /**
   * Offers where the shard can be rebuilt from (an optimizer's masters, covering every element);
   * returns whether the shard took it. A second offer pins the shard for good.
   */
  public boolean offerSource(ShardSource offered) {
    switch (keeper) {
      case PINNED:
        return false;
      case SOURCE:
        pin();
        return false;
      default:
        source = offered;
        keeper = Keeper.SOURCE;
        versionAtSourceUpdate = -1;
        return true;
    }
  }

  /** Whether {@code candidate} is the source (an optimizer asks before relying on it). */
  public boolean rebuiltFrom(ShardSource candidate) {
    return keeper == Keeper.SOURCE && source == candidate;
  }

  /** Keeps the shard for good (rebuilt first if it was freed); any source is dropped. */
  public void pin() {
    ensureResident();
    source = null;
    keeper = Keeper.PINNED;
  }

  /** Withdraws {@code owner}'s source (an optimizer closing): the shard is rebuilt and keeps the values again. */
  public void withdrawSource(ShardSource owner) {
    if (rebuiltFrom(owner)) {
      ensureResident();
      source = null;
      keeper = Keeper.SHARD;
      versionAtSourceUpdate = -1;
    }
  }

  /**
   * The source changed (an optimizer step or load): the shard is stale. Freed now, to be rebuilt
   * when next read, or rewritten at once while the parameters view it. The caller has completed
   * any gather still reading it.
   */
  void sourceUpdated() {
    if (keeper != Keeper.SOURCE) {
      throw new IllegalStateException(owner + ": no shard source registered");
    }
    if (residency == Residency.RESIDENT && lentToParameters) {
      rebuildInto(tensor);
    } else {
      free();
    }
    versionAtSourceUpdate = version;
  }

  /** Frees the storage if the source can rebuild it and the parameters do not view it. */
  void freeIfRebuildable() {
    if (matchesSource()) {
      free();
    }
  }

  /** The shard as a world of one's gathered buffer: the parameters view it until {@link #returnFromParameters()}. */
  Tensor lendToParameters() {
    ensureResident();
    lentToParameters = true;
    return tensor;
  }

  void returnFromParameters() {
    lentToParameters = false;
  }

  /** Bytes held now (0 while freed). */
  long residentBytes() {
    return residency == Residency.RESIDENT ? layout.shardNumel() * torch.elementSize(tensor.scalar_type()) : 0;
  }

  private void ensureResident() {
    if (residency == Residency.FREED) {
      try (PointerScope scope = new PointerScope()) {
        tensor.resize_(layout.shardNumel()); // new storage; the tensor object (and every handle to it) stays
      }
      rebuildInto(tensor);
      residency = Residency.RESIDENT;
    }
  }

  private void rebuildInto(Tensor into) {
    try (PointerScope scope = new PointerScope(); NoGradGuard noGrad = new NoGradGuard()) {
      if (layout.shardEndsInPadding()) {
        into.zero_();
      }
      source.restoreInto(into);
    }
  }

  private void free() {
    if (residency == Residency.RESIDENT && !lentToParameters) {
      try (PointerScope scope = new PointerScope()) {
        tensor.set_(torch.empty(new long[] {0}, options, new MemoryFormatOptional()).storage());
      }
      residency = Residency.FREED;
    }
  }
}
