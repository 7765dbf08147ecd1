package io.bmtrain4j.dist;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import java.time.Duration;

/**
 * One rank of {@link RendezvousFaultsTest}: {@code TIMEOUT_SECONDS once} joins, all-reduces and
 * exits; {@code TIMEOUT_SECONDS forever} joins and then keeps meeting its peers at barriers.
 * A failure prints its message and exits 1, as the training main does.
 */
public final class RendezvousRank {
  private RendezvousRank() {}

  public static void main(String[] args) throws InterruptedException {
    try {
      Bmt.initDistributed(InitOptions.builder().seed(0).timeout(Duration.ofSeconds(Long.parseLong(args[0]))).build());
      System.out.println("joined as rank " + Bmt.rank());
      do {
        Bmt.synchronize();
        Thread.sleep(200);
      } while (args.length > 1 && args[1].equals("forever"));
      System.out.println("done");
    } catch (RuntimeException e) {
      System.out.println("error: " + e.getMessage());
      System.exit(1);
    }
  }
}
