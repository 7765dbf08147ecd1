package io.bmtrain4j;

import io.bmtrain4j.natives.NativeLibraries;
import io.bmtrain4j.dist.DistContext;
import io.bmtrain4j.dist.DifferentiableCollectives;
import io.bmtrain4j.dist.DistEnvironment;
import io.bmtrain4j.dist.ProcessGuards;
import io.bmtrain4j.dist.ReduceOperation;
import io.bmtrain4j.zero.ShardedModuleRuntime;
import io.bmtrain4j.zero.ShardedModules;
import io.bmtrain4j.zero.ShardedParameter;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The facade users call, named after BMTrain's {@code bmt} module: joining the job, the rank
 * helpers, differentiable collectives, and the sharded model's parameters, gradients and memory.
 */
public final class Bmt {
  private Bmt() {}

  /**
   * Joins the job described by the launcher's environment (torchrun's, else Slurm's, else a single
   * process) and makes it current. Every rank seeds libtorch with {@code options.seed()}.
   */
  public static DistContext initDistributed(InitOptions options) {
    // Before any libtorch class initialises (ranks start together: see [Note: native cache]), and
    // outside the rendezvous deadline below: waiting for another process to unpack is no hung peer.
    NativeLibraries.load();
    DistEnvironment env = DistEnvironment.fromEnvironment(options.environment());
    String who = "rank " + env.rank() + " of " + env.worldSize();
    java.util.function.Supplier<DistContext> join = () -> DistContext.create(env, options.seed(), options.timeout(),
        options.backend(), options.separateReduceStream());
    DistContext ctx;
    if (options.processGuards()) {
      ProcessGuards.exitWithLauncher(who, options.environment());
      // The store's and process group's constructors block in native code: bound them from outside.
      ctx = env.worldSize() == 1 ? join.get() : ProcessGuards.withinDeadline(who, options.timeout(), join::get);
    } else {
      ctx = join.get();
    }
    DistContext.install(ctx);
    if (options.preferCudnnAttention()) {
      AttentionBackends.preferCudnnWhereFaster();
    }
    return ctx;
  }

  public static DistContext context() {
    return DistContext.current();
  }

  public static int rank() {
    return DistContext.current().rank();
  }

  public static int worldSize() {
    return DistContext.current().worldSize();
  }

  /**
   * How long this rank's compute waited on collectives: {@code start()} before the steps to
   * measure, {@code stop()} after them (benchmarks use it to show how much of the communication
   * overlap hid). Off, and free, unless started.
   */
  public static io.bmtrain4j.dist.CollectiveWaits collectiveWaits() {
    return DistContext.current().comm().collectiveWaits();
  }

  /** Waits until every rank gets here. */
  public static void synchronize() {
    DistContext.current().communicator().barrier();
  }

  /**
   * Keeps {@code pointer} (a tensor, say) alive past the {@code PointerScope} it was created in:
   * the caller closes it. A block's forward runs in a scope of its own that frees everything but
   * its outputs when it returns; a cache the forward builds and keeps in a field needs this.
   * Call it while the scope the pointer was created in is still the innermost one (right after
   * creating it): it detaches the pointer from that scope.
   */
  public static <T extends org.bytedeco.javacpp.Pointer> T keep(T pointer) {
    return io.bmtrain4j.internal.Native.own(pointer);
  }

  /**
   * {@code input.matmul(weight)} for a checkpointed block's last matmul, which a recompute then
   * leaves out, as PyTorch's checkpoint stops early: its backward needs only {@code input} and
   * {@code weight}. The result must reach the block's outputs through nothing but additions,
   * dropout, casts and reshapes (checked at each recompute). See {@link io.bmtrain4j.zero.EarlyStop}.
   */
  public static Tensor lastMatmul(Tensor input, Tensor weight) {
    return io.bmtrain4j.zero.EarlyStop.lastMatmul(input, weight);
  }

  /**
   * {@code op(inputs)}, marked as costly to recompute (attention, say): a block that the
   * activation budget, or a plan given by hand, puts in {@link io.bmtrain4j.zero.ActivationMode#SELECTIVE}
   * keeps this part's graph from forward to backward and recomputes only the rest. Elsewhere it
   * just runs. See {@link io.bmtrain4j.zero.SelectiveRecompute}.
   */
  public static Tensor costlyToRecompute(String name, java.util.function.Function<Tensor[], Tensor> op, Tensor... inputs) {
    return io.bmtrain4j.zero.SelectiveRecompute.costly(name, op, inputs);
  }

  /**
   * Lets the runtime choose what each checkpointed block of {@code model} keeps for backward,
   * within a peak-memory budget per rank (null: back to the blocks' options). The next training
   * step measures every block; from the one after it the plan holds, until the input shapes
   * change. See {@link io.bmtrain4j.zero.ActivationBudget}.
   */
  public static void activationBudget(Object model, io.bmtrain4j.zero.ActivationBudget budget) {
    runtimeOf(model).setActivationBudget(budget);
  }

  /** The activation budget's plan in force for {@code model}, or null; {@code describe()} prints it. */
  public static io.bmtrain4j.zero.ActivationPlan activationPlan(Object model) {
    return runtimeOf(model).activationPlan();
  }

  /**
   * Fixes what the named checkpointed blocks ("layers.3") keep for backward, over the budget's
   * plan and the blocks' options (an empty map lifts it). Between steps.
   */
  public static void planActivations(Object model, Map<String, io.bmtrain4j.zero.ActivationMode> modes) {
    runtimeOf(model).planActivations(modes);
  }

  /** Prints on rank 0 only, like BMTrain's {@code print_rank}. */
  public static void printRank(String format, Object... args) {
    if (rank() == 0) {
      System.out.println(String.format(format, args));
    }
  }

  /** The mean of a scalar loss across ranks, for logging (not differentiable). */
  public static double meanLoss(Tensor loss) {
    try (NoGradGuard g = new NoGradGuard()) {
      Tensor t = loss.detach().to(torch.ScalarType.Double).reshape(1).clone();
      DistContext.current().communicator().allReduce(t, ReduceOperation.AVG).await();
      double v = t.item().toDouble();
      t.close();
      return v;
    }
  }

  /**
   * The mean of a scalar loss across ranks: the old name of {@link #meanLoss}, which says what it
   * returns (BMTrain's {@code sum_loss} returns a mean too).
   */
  @Deprecated
  public static double sumLoss(Tensor loss) {
    return meanLoss(loss);
  }

  /** Differentiable all-gather: a tensor of shape {@code [world, ...x.shape]}; backward reduce-scatters (sums). */
  public static Tensor allGather(Tensor x) {
    return DifferentiableCollectives.allGather(DistContext.current().communicator(), x);
  }

  /** Differentiable all-reduce (SUM or AVG); backward all-reduces the gradient the same way. */
  public static Tensor allReduce(Tensor x, ReduceOperation op) {
    return DifferentiableCollectives.allReduce(DistContext.current().communicator(), x, op);
  }

  /** Differentiable reduce-scatter along dim 0 (size divisible by the world size); backward all-gathers. */
  public static Tensor reduceScatter(Tensor x, ReduceOperation op) {
    return DifferentiableCollectives.reduceScatter(DistContext.current().communicator(), x, op);
  }

  /** Differentiable broadcast from {@code root}; backward sums the gradients into the root's input. */
  public static Tensor broadcast(Tensor x, int root) {
    return DifferentiableCollectives.broadcast(DistContext.current().communicator(), x, root);
  }

  /** The sharding state of a generated model instance. */
  public static ShardedModuleRuntime runtimeOf(Object model) {
    return ShardedModules.runtimeOf(model);
  }

  /** This rank's parameter slices of the whole model, in state-dict order (what an optimizer updates). */
  public static List<ShardedParameter> parameters(Object model) {
    return ShardedModules.parameters(model);
  }

  /** Gives every checkpointed block of {@code model} these options instead of its annotation's (between steps). */
  public static void configureBlocks(Object model, io.bmtrain4j.zero.BlockOptions options) {
    runtimeOf(model).configureBlocks(options);
  }

  /** Completes the gradient reductions backward left pending (a collective; the optimizer calls it). */
  public static void finishBackward(Object model) {
    runtimeOf(model).finishBackward();
  }

  /** Whole parameters, gathered on every rank (a collective; for tests, saving and inspection). */
  public static Map<String, Tensor> gatherParameters(Object model) {
    return ShardedModules.gatherWhole(model, false);
  }

  /**
   * Whole averaged gradients, gathered on every rank (a collective); frozen parameters and
   * parameters that received no gradient are absent.
   */
  public static Map<String, Tensor> gatherGradients(Object model) {
    return ShardedModules.gatherWhole(model, true);
  }

  /**
   * This rank's shards of {@code model} (one flat tensor per block, keyed by the block's path), and
   * the world size and rank they belong to: with the optimizer manager's state dict, what an exact
   * resume at the same world size needs. (Resharding to another world size is the checkpoint
   * issue's.)
   */
  public static Map<String, Tensor> shardStateDict(Object model) {
    return io.bmtrain4j.store.ShardStates.stateDict(model);
  }

  /** Loads {@link #shardStateDict} saved by the same rank of a job of the same world size. */
  public static void loadShardStateDict(Object model, Map<String, Tensor> state) {
    io.bmtrain4j.store.ShardStates.load(model, state);
  }

  /**
   * Saves the whole model as one safetensors file keyed by field path, streamed block by block
   * (a collective: every rank calls it; rank 0 writes; atomic rename when complete).
   */
  public static void save(Object model, java.nio.file.Path file) {
    io.bmtrain4j.store.SafeTensorsCheckpoint.save(runtimeOf(model), file);
  }

  /** Loads a safetensors file into every rank's shards (strict: no unexpected keys either). Any world size. */
  public static void load(Object model, java.nio.file.Path file, boolean strict) {
    io.bmtrain4j.store.SafeTensorsCheckpoint.load(runtimeOf(model), file, strict);
  }

  /**
   * Declares a parameter whose values are drawn later, by {@link #initParameters}: use it in a
   * constructor instead of {@code torch.randn(...)} so that constructing a model never
   * materialises it whole. fp32, requires grad.
   */
  public static Tensor parameter(io.bmtrain4j.init.Initializer init, long... shape) {
    Tensor t = torch.empty(shape).requires_grad_(true);
    io.bmtrain4j.init.DeferredParameters.register(t, init);
    return t;
  }

  /**
   * As {@link #parameter(io.bmtrain4j.init.Initializer, long...)}, for a parameter of
   * {@code dtype} on {@code device} (a GPU, say). Its stand-in has the parameter's shape but every
   * stride 0, so it holds one element: constructing a model allocates nothing of its
   * parameters, and only each rank's shard ever exists on {@code device}. (A {@code meta} tensor
   * would do the same, but libtorch refuses to swap its data for a real device's later.)
   */
  public static Tensor parameter(io.bmtrain4j.init.Initializer init, torch.ScalarType dtype, org.bytedeco.pytorch.Device device,
      long... shape) {
    Tensor t = torch.empty_strided(shape, new long[shape.length], new org.bytedeco.pytorch.TensorOptions()
        .dtype(new org.bytedeco.pytorch.ScalarTypeOptional(dtype)).device(new org.bytedeco.pytorch.DeviceOptional(device)))
        .requires_grad_(true);
    io.bmtrain4j.init.DeferredParameters.register(t, init);
    return t;
  }

  /**
   * Draws every deferred parameter of {@code model}: each rank only its own slices, on their
   * device, keyed by the job's seed and each parameter's path, so the values are the same at every
   * world size (see {@link io.bmtrain4j.init.Initializer}).
   */
  public static void initParameters(Object model) {
    ShardedModules.initParameters(model, DistContext.current().seed());
  }

  /** What this rank holds for {@code model} now. */
  public static MemoryReport memoryReport(Object model) {
    io.bmtrain4j.zero.HeldMemory held = ShardedModules.heldMemory(model);
    return new MemoryReport(rank(), held.shardBytes(), held.gradientBytes(), held.gatheredBytes(), held.parameters(),
        held.onGpu() ? DeviceMemory.current() : null, runtimeOf(model).activationPlan());
  }
}
