package io.bmtrain4j.dist;

import java.util.HashMap;
import java.util.Map;
import org.bytedeco.pytorch.Store;

/**
 * One round of small messages between ranks through the rendezvous store: each rank publishes
 * one string, and any rank may read any other's (waiting for it up to the store's timeout). For
 * exchanges that must not depend on the communicator's device (a CUDA communicator only moves
 * GPU tensors) and that should fail by name rather than inside a collective: checkpoint digests
 * and save status, model layouts.
 *
 * <p>Every rank must open the same rounds in the same order: a round's keys are its topic and
 * how many rounds of that topic this job has opened before (see {@link DistContext#storeRound}).
 */
public final class StoreRound {
  private final Store store;
  private final String prefix;
  private final Map<Integer, String> local = new HashMap<>(); // a world of one has no store

  StoreRound(Store store, String prefix) {
    this.store = store;
    this.prefix = prefix;
  }

  public void publish(int rank, String value) {
    if (store == null) {
      local.put(rank, value);
    } else {
      Rendezvous.setString(store, prefix + rank, value);
    }
  }

  /** {@code rank}'s value, waiting for it up to the store's timeout. */
  public String get(int rank) {
    if (store == null) {
      String v = local.get(rank);
      if (v == null) {
        throw new IllegalStateException("rank " + rank + " has published nothing in " + prefix);
      }
      return v;
    }
    try {
      return Rendezvous.getString(store, prefix + rank);
    } catch (RuntimeException e) {
      throw new CollectiveException("waiting for rank " + rank + "'s message (" + prefix + rank + ") failed: "
          + GlooCommunicator.firstLine(e), e);
    }
  }
}
