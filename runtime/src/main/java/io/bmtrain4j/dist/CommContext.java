package io.bmtrain4j.dist;

/**
 * The job's communication, passed explicitly to everything that communicates: the data-parallel
 * communicator that shards parameters and averages gradients, and the gradient reductions in
 * flight on it. Process groups for other kinds of parallelism will live here too.
 */
public final class CommContext {
  private final Communicator dataParallel;
  private final GradientReducer gradientReductions = new GradientReducer();
  private final CollectiveWaits waits = new CollectiveWaits();

  public CommContext(Communicator dataParallel) {
    this.dataParallel = new MeasuredCommunicator(dataParallel, waits);
  }

  /** The communicator over which parameters are sharded and gradients averaged. */
  public Communicator dataParallel() {
    return dataParallel;
  }

  /** How long the job's consumers waited on its collectives, while measured (off by default). */
  public CollectiveWaits collectiveWaits() {
    return waits;
  }

  /** The block schedule's reduce-scatters: at most one in flight on {@link #dataParallel()}. */
  public GradientReducer gradientReductions() {
    return gradientReductions;
  }
}
