package io.bmtrain4j.launch;

/**
 * Test-only rank program for {@link LocalLauncherTest}. Prints its torchrun environment and pid, then:
 * {@code ok [LINES]} prints LINES more lines to stdout and stderr each and exits 0; {@code fail R CODE} exits with CODE
 * after a short delay on rank R while every other rank sleeps 60 s (to be stopped by the launcher).
 */
public final class EchoRank {
  private EchoRank() {}

  public static void main(String[] args) throws InterruptedException {
    String rank = System.getenv("RANK");
    System.out.println("RANK=" + rank + " WORLD_SIZE=" + System.getenv("WORLD_SIZE")
        + " LOCAL_RANK=" + System.getenv("LOCAL_RANK") + " MASTER_PORT=" + System.getenv("MASTER_PORT"));
    System.out.println("pid=" + ProcessHandle.current().pid());
    System.out.flush();
    String mode = args.length > 0 ? args[0] : "ok";
    if (mode.equals("ok")) {
      int lines = args.length > 1 ? Integer.parseInt(args[1]) : 0;
      for (int i = 0; i < lines; i++) {
        // Long lines make a torn (interleaved) line likely if the launcher did not print whole lines under a lock.
        String body = ("line " + i + " of rank " + rank + " ").repeat(20);
        System.out.println("out " + body);
        System.err.println("err " + body);
      }
      System.exit(0);
    }
    if (mode.equals("fail")) {
      if (rank.equals(args[1])) {
        Thread.sleep(500);
        System.exit(Integer.parseInt(args[2]));
      }
      Thread.sleep(60_000);
      System.exit(0);
    }
    System.err.println("unknown mode " + mode);
    System.exit(99);
  }
}
