package io.bmtrain4j.optim;

import io.bmtrain4j.internal.Native;
import io.bmtrain4j.zero.ParameterGroup;
import io.bmtrain4j.zero.ShardedParameter;
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
 * kernel, or, for bf16/fp16 parameters on a GPU, on bmtrain4j's own {@link MixedPrecisionAdamW},
 * which reads their gradients without an fp32 copy. Either kernel updates fp32 master weights
 * ({@code MasterWeights}): fp32 parameters in place, fp16/bf16 parameters through fp32 copies
 * whose rounding then becomes the parameter. This class keeps only Adam's own state, the moments
 * and step counts, beside the masters (where a {@code StatePlacement} keeps them: on the
 * parameters' device here, on the host in {@link AdamOffloadOptimizer}).
 */
public class AdamOptimizer extends ShardedOptimizer {
  /** State-dict key suffixes, after the parameter's name: the names checkpoints hold. */
  private static final String STEP = "step";
  private static final String EXP_AVG = "exp_avg";
  private static final String EXP_AVG_SQ = "exp_avg_sq";

  private final AdamOptions options;
  private final StatePlacement placement;
  private final MasterWeights masters;
  private final Map<ShardedParameter, Moments> moments = new IdentityHashMap<>();
  /** bf16/fp16 parameters' update on a GPU (see AdamOptions.mixedPrecisionKernel); made at the first such step. */
  private MixedPrecisionAdamW kernel;
  /** Parameter slices the last step updated with that kernel. */
  private int kernelSlices;

  /** A parameter's Adam state, fp32 beside its master: the two moments and its step count. */
  private record Moments(Tensor expAvg, Tensor expAvgSq, Tensor step) {}

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
    this.masters = new MasterWeights(parameters(), placement);
    try (PointerScope scope = new PointerScope()) {
      for (ShardedParameter p : parameters()) {
        TensorOptions fp32 = placement.fp32Options(p.group().device());
        long n = p.localLength();
        moments.put(p, new Moments(Native.own(torch.zeros(new long[] {n}, fp32)),
            Native.own(torch.zeros(new long[] {n}, fp32)), Native.own(torch.zeros(new long[] {}, fp32))));
      }
    }
    placement.reserveGradients(parameters());
  }

  public AdamOptions options() {
    return options;
  }

  /** One parameter taking a step, with its hyperparameters. */
  private record Stepping(HyperparameterGroup settings, ShardedParameter parameter) {}

  @Override
  public void step(double gradScale) {
    steps++;
    kernelSlices = 0;
    double baseLr = steps <= options.holdSteps() ? 0.0 : learningRate();
    try (PointerScope temporaries = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
      Map<ParameterGroup, List<Stepping>> byBlock = new LinkedHashMap<>();
      List<Tensor> allSteps = new ArrayList<>();
      for (HyperparameterGroup settings : groups) {
        for (ShardedParameter p : settings.parameters()) {
          Tensor grad = p.requiresGrad() ? p.grad() : null;
          if (grad == null) {
            continue;
          }
          allSteps.add(moments.get(p).step());
          if (grad.numel() != 0) { // an empty slice on this rank still counts the step with the other ranks (resharding)
            byBlock.computeIfAbsent(p.group(), block -> new ArrayList<>()).add(new Stepping(settings, p));
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
      List<ShardedParameter> updated = new ArrayList<>();
      for (ParameterGroup block : blocks) {
        for (Stepping st : byBlock.get(block)) {
          stepping.add(st);
          updated.add(st.parameter());
        }
      }
      StatePlacement.StepGradients gradients = placement.gradients(blocks, gradScale);
      masters.adoptExternalWrites(blocks);
      update(stepping, gradients, gradScale, baseLr);
      masters.updated(updated);
    }
  }

  /**
   * Updates these parameters' masters and moments, per hyperparameter group: bf16/fp16 gradients
   * on a GPU through the mixed-precision kernel (one launch per 64 slices, no fp32 copy), the rest
   * through one call of libtorch's fused AdamW.
   */
  private void update(List<Stepping> stepping, StatePlacement.StepGradients gradients, double gradScale, double baseLr) {
    Map<HyperparameterGroup, List<ShardedParameter>> bySettings = new LinkedHashMap<>();
    for (Stepping st : stepping) {
      bySettings.computeIfAbsent(st.settings(), k -> new ArrayList<>()).add(st.parameter());
    }
    for (Map.Entry<HyperparameterGroup, List<ShardedParameter>> e : bySettings.entrySet()) {
      HyperparameterGroup settings = e.getKey();
      double lr = baseLr * settings.lrScale();
      List<ShardedParameter> all = e.getValue();
      List<Tensor> stored = options.mixedPrecisionKernel() ? gradients.asStored(all) : null;
      UpdateList fused = new UpdateList();
      UpdateList converting = new UpdateList();
      for (int i = 0; i < all.size(); i++) {
        ShardedParameter p = all.get(i);
        if (stored != null && mixedPrecisionKernel().handles(masters.of(p), stored.get(i))) {
          converting.add(p, stored.get(i));
        } else {
          fused.add(p, null); // its fp32 gradient comes from the placement, per block, below
        }
      }
      if (!converting.parameters.isEmpty()) {
        kernelSlices += converting.parameters.size();
        kernel.step(converting.weights, converting.grads, converting.expAvgs, converting.expAvgSqs, converting.steps, lr,
            options.beta1(), options.beta2(), settings.weightDecay(), options.eps(), gradScale);
      }
      if (!fused.parameters.isEmpty()) {
        FusedAdamW.step(fused.weights, gradients.of(fused.parameters), fused.expAvgs, fused.expAvgSqs, fused.steps, lr,
            options.beta1(), options.beta2(), settings.weightDecay(), options.eps());
      }
    }
  }

  /** The tensors one update call takes, parameter by parameter. */
  private final class UpdateList {
    final List<ShardedParameter> parameters = new ArrayList<>();
    final List<Tensor> weights = new ArrayList<>();
    final List<Tensor> grads = new ArrayList<>(); // given only for the mixed-precision kernel
    final List<Tensor> expAvgs = new ArrayList<>();
    final List<Tensor> expAvgSqs = new ArrayList<>();
    final List<Tensor> steps = new ArrayList<>();

    void add(ShardedParameter p, Tensor grad) {
      Moments m = moments.get(p);
      parameters.add(p);
      weights.add(masters.of(p));
      expAvgs.add(m.expAvg());
      expAvgSqs.add(m.expAvgSq());
      steps.add(m.step());
      if (grad != null) {
        grads.add(grad);
      }
    }
  }

  /** The mixed-precision kernel, made at the first step that has bf16/fp16 gradients beside their state. */
  private MixedPrecisionAdamW mixedPrecisionKernel() {
    if (kernel == null) {
      kernel = new MixedPrecisionAdamW();
    }
    return kernel;
  }

  /**
   * How many parameter slices the last step updated with bmtrain4j's mixed-precision kernel
   * ({@link AdamOptions#mixedPrecisionKernel()}): 0 on the CPU, for fp32 parameters, offloaded
   * state, or where NVRTC is missing (then a warning was logged).
   */
  public int slicesOnMixedPrecisionKernel() {
    return kernelSlices;
  }

  @Override
  public Map<String, Tensor> stateDict() {
    masters.adoptExternalWrites(); // the saved masters must hold what was written into the shards
    Map<String, Tensor> out = new LinkedHashMap<>();
    out.put("steps", torch.tensor(new long[] {steps}).reshape(new long[] {}));
    for (ShardedParameter p : parameters()) {
      Moments m = moments.get(p);
      out.put(stateKey(p, STEP), m.step());
      out.put(stateKey(p, EXP_AVG), m.expAvg());
      out.put(stateKey(p, EXP_AVG_SQ), m.expAvgSq());
      masters.save(p, out);
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
    }
    out.putAll(masters.perElementKeys());
    return out;
  }

  @Override
  public void loadStateDict(Map<String, Tensor> state) {
    steps = StateDicts.require(state, "steps", new long[] {}).item().toLong();
    try (NoGradGuard g = new NoGradGuard()) {
      for (ShardedParameter p : parameters()) {
        Moments m = moments.get(p);
        long n = m.expAvg().numel();
        m.step().copy_(StateDicts.require(state, stateKey(p, STEP), new long[] {}));
        m.expAvg().copy_(StateDicts.require(state, stateKey(p, EXP_AVG), new long[] {n}));
        m.expAvgSq().copy_(StateDicts.require(state, stateKey(p, EXP_AVG_SQ), new long[] {n}));
        masters.load(p, state);
      }
      masters.loaded();
    }
  }

  @Override
  public void close() {
    masters.close(); // first: the model keeps its shards from now on
    for (Moments m : moments.values()) {
      m.expAvg().close();
      m.expAvgSq().close();
      m.step().close();
    }
    moments.clear();
    if (kernel != null) {
      kernel.close();
    }
    placement.close();
  }
}
