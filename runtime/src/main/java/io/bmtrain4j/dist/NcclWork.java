package io.bmtrain4j.dist;

import io.bmtrain4j.internal.Native;
import org.bytedeco.pytorch.cuda.CUDAEvent;
import org.bytedeco.pytorch.global.torch_cuda;

/**
 * One NCCL collective enqueued on the communicator's stream, with the CUDA event recorded after
 * it. {@link #await()} makes the caller's current stream wait on that event: no host
 * synchronisation. The communicator's watchdog polls the event and closes it once it has fired,
 * so a handle that is never awaited leaks nothing.
 *
 * <p>[Note: buffers held with events] The caching allocator only knows the stream a buffer was
 * allocated on (the compute stream). A buffer the collective reads or writes must therefore not
 * be freed until the compute stream has waited on {@link #await()}: after that, any reuse of the
 * memory on the compute stream is ordered after the collective. Callers keep their buffers until
 * then ({@code ParameterGroup#release}, {@code PendingReduction#complete}), so no
 * {@code recordStream} is needed and no memory is held past its consumer.
 */
final class NcclWork implements CollectiveHandle, NcclWatchdog.Watched {
  private static final int DISABLE_TIMING = 0x02; // cudaEventDisableTiming: cheapest event

  final String what;
  final long sequence;
  final long issuedNanos;
  private CUDAEvent done;
  private boolean completed;
  private volatile RuntimeException failure;

  NcclWork(String what, long sequence, org.bytedeco.pytorch.cuda.CUDAStream stream) {
    this.what = what;
    this.sequence = sequence;
    this.issuedNanos = System.nanoTime();
    // Owned, not the caller's: a step's PointerScope must not free an event the watchdog still polls.
    this.done = Native.own(new CUDAEvent(DISABLE_TIMING));
    done.record(stream);
  }

  @Override
  public synchronized void await() {
    if (failure != null) {
      throw failure;
    }
    if (!completed) {
      done.block(torch_cuda.getCurrentCUDAStream());
    }
  }

  @Override
  public synchronized boolean isCompleted() {
    return poll();
  }

  @Override
  public long issuedNanos() {
    return issuedNanos;
  }

  @Override
  public String describe() {
    return what + " (collective #" + sequence + ")";
  }

  /** True once the GPU has passed the collective; frees the event then. */
  @Override
  public synchronized boolean poll() {
    if (!completed && done.query()) {
      completed = true;
      done.close();
      done = null;
    }
    return completed;
  }

  @Override
  public void fail(RuntimeException e) {
    failure = e;
  }
}
