package io.bmtrain4j.zero;

import io.bmtrain4j.init.Initializer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Where each parameter of a block lies in the block's flat buffer, BMTrain-style: the parameters
 * one after another, padded to a multiple of the world size, and cut into one equal shard per
 * rank. Pure arithmetic: it owns no tensor.
 */
public final class FlatLayout {
  private final List<Member> members;
  private final long numel;
  private final long shardNumel;
  private final int worldSize;
  private final int rank;

  /** One parameter of the block: its place in the flat buffer, and the user's tensor object. */
  public static final class Member {
    private final String name;
    final org.bytedeco.pytorch.Tensor tensor;
    private final long[] shape;
    private final long offset;
    private final long numel;
    private Initializer deferred;

    Member(String name, org.bytedeco.pytorch.Tensor tensor, long[] shape, long offset, long numel, Initializer deferred) {
      this.name = name;
      this.tensor = tensor;
      this.shape = shape;
      this.offset = offset;
      this.numel = numel;
      this.deferred = deferred;
    }

    /** The initializer still to run ({@code Bmt.initParameters}), or null once the values are set. */
    public Initializer deferredInitializer() {
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

  /** Lays out {@code tensors} (named {@code names}) in order; {@code deferred} gives each one's pending initializer or null. */
  FlatLayout(List<String> names, List<org.bytedeco.pytorch.Tensor> tensors, List<Initializer> deferred, int worldSize, int rank) {
    List<Member> ms = new ArrayList<>();
    long offset = 0;
    for (int i = 0; i < tensors.size(); i++) {
      org.bytedeco.pytorch.Tensor p = tensors.get(i);
      long n = p.numel();
      ms.add(new Member(names.get(i), p, p.sizes().vec().get(), offset, n, deferred.get(i)));
      offset += n;
    }
    this.members = Collections.unmodifiableList(ms);
    this.numel = offset;
    this.worldSize = worldSize;
    this.rank = rank;
    this.shardNumel = Math.max(1, (numel + worldSize - 1) / worldSize);
  }

  public List<Member> members() {
    return members;
  }

  /** Elements of all parameters, without padding. */
  public long numel() {
    return numel;
  }

  /** Elements of one rank's shard, padding included. */
  public long shardNumel() {
    return shardNumel;
  }

  /** Elements of the whole flat buffer: every rank's shard, padding included. */
  public long paddedNumel() {
    return shardNumel * worldSize;
  }

  /** Whether this rank's shard ends in padding (which must read as zeros). */
  boolean shardEndsInPadding() {
    return numel < shardNumel * (rank + 1);
  }

  /** Where rank {@code rank}'s shard meets parameter {@code m}. */
  public Overlap overlap(Member m, int rank) {
    long shardBegin = shardNumel * rank;
    long begin = Math.max(shardBegin, m.offset);
    long end = Math.min(shardBegin + shardNumel, m.offset + m.numel);
    return end <= begin ? Overlap.NONE : new Overlap(begin - m.offset, begin - shardBegin, end - begin);
  }

  /** Where this rank's shard meets parameter {@code m}. */
  public Overlap overlap(Member m) {
    return overlap(m, rank);
  }

  /** How many parameter elements (padding excluded) this rank's shard holds. */
  public long parameterElementsOnThisRank() {
    long n = 0;
    for (Member m : members) {
      n += overlap(m).length();
    }
    return n;
  }
}
