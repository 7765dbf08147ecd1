package io.bmtrain4j.optim;

import io.bmtrain4j.zero.LocalShard;
import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedParameter;
import io.bmtrain4j.internal.Native;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * Adam with decoupled weight decay over this rank's slices, on libtorch's fused multi-tensor
 * kernel. fp32 parameters are updated in place; fp16/bf16 parameters get fp32 master weights kept
 * here, updated, then copied back (rounded) into the parameter.
 */
public class AdamOptimizer extends ShardedOptimizer {
  /** State-dict key suffixes, after the parameter's name: the names checkpoints hold. */
  private static final String STEP = "step";
  private static final String EXP_AVG = "exp_avg";
  private static final String EXP_AVG_SQ = "exp_avg_sq";
  private static final String MASTER = "master";

  private final AdamOptions options;
  private final StatePlacement placement;
  private final Map<ShardedParameter, State> states = new IdentityHashMap<>();
  /** This optimizer's parameters with separate masters, by block, and each block's write count they reflect. */
  private final Map<ParameterGroup, List<ShardedParameter>> withMasters = new LinkedHashMap<>();
  private final Map<ParameterGroup, Long> writesSeen = new IdentityHashMap<>();
  /** The sources this optimizer offered for blocks it could rebuild: see registerShardSources. */
  private final Map<ParameterGroup, LocalShard.ShardSource> sources = new IdentityHashMap<>();

  /** Per-parameter state: the fp32 weights the kernel updates, its moments and step. */
  static final class State {
    final Tensor master; // the parameter slice itself (fp32, not offloaded) or an fp32 copy
    final boolean separateMaster;
    final Tensor expAvg;
    final Tensor expAvgSq;
    final Tensor step;

    State(Tensor master, boolean separateMaster, Tensor expAvg, Tensor expAvgSq, Tensor step) {
      this.master = master;
      this.separateMaster = separateMaster;
      this.expAvg = expAvg;
      this.expAvgSq = expAvgSq;
      this.step = step;
    }
  }

  /** One group: every parameter with the options' weight decay. */
  public AdamOptimizer(List<ShardedParameter> parameters, AdamOptions options) {
    this(List.of(HyperparameterGroup.of(parameters, options.weightDecay())), options, new DeviceStatePlacement());
  }

  /** Groups with their own lr scale and weight decay (BMTrain's grouped_parameters). */
  public AdamOptimizer(AdamOptions options, HyperparameterGroup... groups) {
    this(List.of(groups), options, new DeviceStatePlacement());
  }

  /** With its state where {@code placement} keeps it (see {@link AdamOffloadOptimizer}). */
  AdamOptimizer(List<HyperparameterGroup> groups, AdamOptions options, StatePlacement placement) {
    super(groups, options.lr());
    this.options = options;
    this.placement = placement;
    try (NoGradGuard g = new NoGradGuard()) {
      for (ShardedParameter p : parameters()) {
        states.put(p, newState(p));
      }
    }
    placement.reserveGradients(parameters());
    // A block's parameters share its dtype, so they have separate masters all or none.
    byBlock(parameters()).forEach((block, params) -> {
      if (states.get(params.get(0)).separateMaster) {
        withMasters.put(block, params);
      }
    });
    registerShardSources();
    withMasters.keySet().forEach(this::noteWritesSeen);
  }

  /** The masters now reflect everything written into {@code block}'s shard so far. */
  private void noteWritesSeen(ParameterGroup block) {
    writesSeen.put(block, block.shard().version());
  }

  /**
   * A block all of whose elements on this rank have device masters here needs no low-precision
   * shard between gathers: it is rebuilt from the masters (LocalShard's [Note: a shard the
   * optimizer can rebuild]), as FSDP2 casts its fp32 shards at each gather. Blocks shared with
   * another optimizer, offloaded masters and fp32 parameters keep their shard.
   */
  private void registerShardSources() {
    if (!placement.mastersRebuildShards()) {
      return;
    }
    for (Map.Entry<ParameterGroup, List<ShardedParameter>> e : withMasters.entrySet()) {
      ParameterGroup block = e.getKey();
      List<ShardedParameter> params = e.getValue();
      if (!coverShard(block, params)) {
        continue;
      }
      LocalShard.ShardSource source = shard -> {
        List<Tensor> slices = new ArrayList<>();
        List<Tensor> masters = new ArrayList<>();
        for (ShardedParameter p : params) {
          if (p.localLength() > 0) {
            slices.add(p.sliceOf(shard));
            masters.add(states.get(p).master);
          }
        }
        MultiTensorOps.copy(slices, masters); // rounds fp32 to the shard's dtype
      };
      if (block.shard().offerSource(source)) {
        sources.put(block, source);
      }
    }
  }

  /** Whether this optimizer's masters rebuild {@code block}'s shard now (another optimizer over it turns that off). */
  private boolean rebuilds(ParameterGroup block) {
    LocalShard.ShardSource source = sources.get(block);
    return source != null && block.shard().rebuiltFrom(source);
  }

  public AdamOptions options() {
    return options;
  }

  private State newState(ShardedParameter p) {
    boolean fp32 = p.group().dtype().value == torch.ScalarType.Float.value;
    boolean separate = !(fp32 && placement.fp32ShardIsItsOwnMaster());
    TensorOptions host = placement.fp32Options(p.group().device());
    Tensor master;
    if (separate) {
      // The view is closed at once: left to the GC, it pinned the shard's first storage (2 bytes
      // per parameter, 2.45 GiB at 1.3B) after the shard had been freed for rebuilding.
      Tensor local = p.readLocal();
      master = Native.own(local.to(host, false, true, new org.bytedeco.pytorch.MemoryFormatOptional()));
      local.close();
    } else {
      master = Native.own(p.local()); // an fp32 shard is its own master, updated in place
    }
    long n = p.localLength();
    Tensor expAvg = Native.own(torch.zeros(new long[] {n}, host));
    Tensor expAvgSq = Native.own(torch.zeros(new long[] {n}, host));
    Tensor step = Native.own(torch.zeros(new long[] {}, host));
    return new State(master, separate, expAvg, expAvgSq, step);
  }

  /** One parameter taking a step: its options' group and its state. */
  private record Stepping(HyperparameterGroup group, ShardedParameter parameter, State state) {}

  @Override
  public void step(double gradScale) {
    steps++;
    double baseLr = steps <= options.holdSteps() ? 0.0 : learningRate();
    try (PointerScope temporaries = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
      Map<ParameterGroup, List<Stepping>> byBlock = new LinkedHashMap<>();
      List<Tensor> allSteps = new ArrayList<>();
      for (HyperparameterGroup group : groups) {
        for (ShardedParameter p : group.parameters()) {
          Tensor grad = p.requiresGrad() ? p.grad() : null;
          if (grad == null) {
            continue;
          }
          State s = states.get(p);
          allSteps.add(s.step);
          if (grad.numel() != 0) { // an empty slice on this rank still counts the step with the other ranks (resharding)
            byBlock.computeIfAbsent(p.group(), block -> new ArrayList<>()).add(new Stepping(group, p, s));
          }
        }
      }
      MultiTensorOps.addScalar(allSteps, 1.0);
      // Blocks in chunks of about options.stepChunkElements(), each chunk in its own scope: its gradients are
      // cast to fp32 (once per block), used, and freed before the next chunk's, so the step never
      // holds the whole model's fp32 gradients (4.9 GiB at 1.3B) yet makes few large calls.
      List<ParameterGroup> chunk = new ArrayList<>();
      long chunkElements = 0;
      for (ParameterGroup block : byBlock.keySet()) {
        chunk.add(block);
        chunkElements += block.shardNumel();
        if (chunkElements >= options.stepChunkElements()) {
          stepChunk(chunk, byBlock, gradScale, baseLr);
          chunk.clear();
          chunkElements = 0;
        }
      }
      stepChunk(chunk, byBlock, gradScale, baseLr);
    }
  }

  private void stepChunk(List<ParameterGroup> blocks, Map<ParameterGroup, List<Stepping>> byBlock, double gradScale,
      double baseLr) {
    if (blocks.isEmpty()) {
      return;
    }
    try (PointerScope chunkScope = new PointerScope()) {
      List<Stepping> stepping = new ArrayList<>();
      for (ParameterGroup block : blocks) {
        stepping.addAll(byBlock.get(block));
      }
      StatePlacement.StepGradients gradients = placement.gradients(blocks, gradScale);
      adoptExternalWrites(blocks);
      stepParameters(stepping, gradients, baseLr);
      for (ParameterGroup block : blocks) {
        if (rebuilds(block)) {
          block.shardSourceUpdated();
        }
      }
    }
  }

  /**
   * A shard handed out for writing since this optimizer last synchronised with it (a loader, an
   * initialiser, a user, another optimizer) may hold values the masters lack. Every element that
   * differs from its master's rounding was written: the master takes it, so the update starts
   * from it and neither the copy-back nor a rebuild undoes it, as with an optimizer that updates
   * the parameter in place. Elements that were only read keep their master's full precision.
   * Offloaded masters compare on the host.
   */
  private void adoptExternalWrites(java.util.Collection<ParameterGroup> blocks) {
    for (ParameterGroup block : blocks) {
      List<ShardedParameter> params = withMasters.get(block);
      Long seen = writesSeen.get(block);
      if (params == null || seen == null || seen == block.shard().version()) {
        continue;
      }
      try (PointerScope scope = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
        Tensor shard = block.shard().forReading();
        for (ShardedParameter p : params) {
          if (p.localLength() > 0) {
            Tensor master = states.get(p).master;
            Tensor slice = p.sliceOf(shard);
            Tensor current = slice.is_cuda() && !master.is_cuda() ? slice.cpu() : slice; // offloaded masters: on the host
            master.copy_(torch.where(current.eq(master.to(current.scalar_type())), master, current.to(torch.ScalarType.Float)));
          }
        }
      }
      noteWritesSeen(block);
    }
  }

  /** Updates these parameters: one fused call per options group, then the masters copied back. */
  private void stepParameters(List<Stepping> stepping, StatePlacement.StepGradients gradients, double baseLr) {
    Map<HyperparameterGroup, List<Stepping>> byOptions = new LinkedHashMap<>();
    for (Stepping st : stepping) {
      byOptions.computeIfAbsent(st.group(), k -> new ArrayList<>()).add(st);
    }
    List<Tensor> roundedDestinations = new ArrayList<>();
    List<Tensor> roundedSources = new ArrayList<>();
    for (Map.Entry<HyperparameterGroup, List<Stepping>> e : byOptions.entrySet()) {
      HyperparameterGroup group = e.getKey();
      List<ShardedParameter> stepped = new ArrayList<>();
      List<Tensor> params = new ArrayList<>();
      List<Tensor> expAvgs = new ArrayList<>();
      List<Tensor> expAvgSqs = new ArrayList<>();
      List<Tensor> updatedSteps = new ArrayList<>();
      for (Stepping st : e.getValue()) {
        State s = st.state();
        stepped.add(st.parameter());
        params.add(s.master);
        expAvgs.add(s.expAvg);
        expAvgSqs.add(s.expAvgSq);
        updatedSteps.add(s.step);
        if (s.separateMaster && !rebuilds(st.parameter().group())) {
          // Rounds to the parameter's dtype (host -> device when offloading). Written through
          // forOptimizerUpdate: this optimizer's own update, not a write another optimizer's masters lack.
          roundedDestinations.add(st.parameter().sliceOf(st.parameter().group().shard().forOptimizerUpdate()));
          roundedSources.add(s.master);
        }
      }
      List<Tensor> grads = gradients.of(stepped);
      FusedAdamW.step(params, grads, expAvgs, expAvgSqs, updatedSteps, baseLr * group.lrScale(), options.beta1(),
          options.beta2(), group.weightDecay(), options.eps());
    }
    MultiTensorOps.copyByDestinationType(roundedDestinations, roundedSources);
  }

  @Override
  public Map<String, Tensor> stateDict() {
    adoptExternalWrites(withMasters.keySet()); // the saved masters must hold what was written into the shards
    Map<String, Tensor> out = new LinkedHashMap<>();
    out.put("steps", torch.tensor(new long[] {steps}).reshape(new long[] {}));
    for (ShardedParameter p : parameters()) {
      State s = states.get(p);
      out.put(stateKey(p, STEP), s.step);
      out.put(stateKey(p, EXP_AVG), s.expAvg);
      out.put(stateKey(p, EXP_AVG_SQ), s.expAvgSq);
      if (s.separateMaster) {
        out.put(stateKey(p, MASTER), s.master);
      }
    }
    return out;
  }

  /** The moments and separate masters: one value per slice element (the step counts are scalars). */
  @Override
  public Map<String, ShardedParameter> perElementKeys() {
    Map<String, ShardedParameter> out = new LinkedHashMap<>();
    for (ShardedParameter p : parameters()) {
      out.put(stateKey(p, EXP_AVG), p);
      out.put(stateKey(p, EXP_AVG_SQ), p);
      if (states.get(p).separateMaster) {
        out.put(stateKey(p, MASTER), p);
      }
    }
    return out;
  }

  @Override
  public void loadStateDict(Map<String, Tensor> state) {
    steps = StateDicts.require(state, "steps", new long[] {}).item().toLong();
    try (NoGradGuard g = new NoGradGuard()) {
      for (ShardedParameter p : parameters()) {
        State s = states.get(p);
        long n = s.expAvg.numel();
        s.step.copy_(StateDicts.require(state, stateKey(p, STEP), new long[] {}));
        s.expAvg.copy_(StateDicts.require(state, stateKey(p, EXP_AVG), new long[] {n}));
        s.expAvgSq.copy_(StateDicts.require(state, stateKey(p, EXP_AVG_SQ), new long[] {n}));
        if (s.separateMaster) {
          s.master.copy_(StateDicts.require(state, stateKey(p, MASTER), new long[] {n}));
          if (!rebuilds(p.group())) {
            p.sliceOf(p.group().shard().forOptimizerUpdate()).copy_(s.master); // its own parameter: see stepParameters
          }
        }
      }
      for (ParameterGroup block : sources.keySet()) {
        if (rebuilds(block)) {
          block.shardSourceUpdated(); // the shard is rebuilt from the loaded masters at the next gather
        }
      }
      withMasters.keySet().forEach(this::noteWritesSeen);
    }
  }

  @Override
  public void close() {
    // The model outlives its optimizer: rebuilt shards are made whole again and kept from now on.
    sources.forEach((block, source) -> block.shard().withdrawSource(source));
    sources.clear();
    for (State s : states.values()) {
      s.master.close(); // a copy, or the owned view of an fp32 shard
      s.expAvg.close();
      s.expAvgSq.close();
      s.step.close();
    }
    states.clear();
    placement.close();
  }
}
