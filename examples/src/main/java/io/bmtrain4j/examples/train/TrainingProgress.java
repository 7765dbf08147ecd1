package io.bmtrain4j.examples.train;

import io.bmtrain4j.launch.Terminal;
import java.io.PrintStream;
import java.time.Duration;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * Rank 0's view of a training run: a progress bar redrawn in place on a terminal, or, in a log or
 * CI where every redraw would become a line, a plain line at every tenth of the run and at least
 * every {@link #PLAIN_INTERVAL} (whichever comes first).
 */
public interface TrainingProgress extends AutoCloseable {
  Duration PLAIN_INTERVAL = Duration.ofSeconds(30);

  /** {@code done} of the run's steps are finished; {@code status} says how it goes (loss, speed, ...). */
  void update(int done, String status);

  @Override
  void close();

  /** For steps {@code first..steps}: a bar on a terminal (see {@link Terminal}), else plain lines to {@code out}. */
  static TrainingProgress create(String task, int first, int steps, PrintStream out) {
    return Terminal.isInteractive() ? bar(task, first, steps) : lines(task, first, steps, out);
  }

  /** Nothing shown (ranks other than 0). */
  static TrainingProgress none() {
    return new TrainingProgress() {
      @Override
      public void update(int done, String status) {}

      @Override
      public void close() {}
    };
  }

  /** me.tongfei's progress bar, redrawn each second. */
  static TrainingProgress bar(String task, int first, int steps) {
    ProgressBar bar = new ProgressBarBuilder().setTaskName(task).setInitialMax(steps)
        .startsFrom(first, Duration.ZERO).setStyle(ProgressBarStyle.ASCII).setUpdateIntervalMillis(1000)
        .setMaxRenderedLength(150).continuousUpdate().build();
    return new TrainingProgress() {
      @Override
      public void update(int done, String status) {
        bar.stepTo(done);
        bar.setExtraMessage(" " + status);
      }

      @Override
      public void close() {
        bar.close();
      }
    };
  }

  /** Plain lines: at each tenth of steps {@code first..steps}, at least every 30 s, and at the end. */
  static TrainingProgress lines(String task, int first, int steps, PrintStream out) {
    return new PlainLines(task, first, steps, out, PLAIN_INTERVAL);
  }

  /** The log-friendly form; see {@link #lines}. */
  final class PlainLines implements TrainingProgress {
    private final String task;
    private final int first;
    private final int steps;
    private final PrintStream out;
    private final long intervalNanos;
    private final long start = System.nanoTime();
    private long lastPrinted = System.nanoTime();
    private int lastTenth;
    private int done;
    private String status = "";
    private boolean finished;

    PlainLines(String task, int first, int steps, PrintStream out, Duration interval) {
      this.task = task;
      this.first = first;
      this.steps = steps;
      this.out = out;
      this.intervalNanos = interval.toNanos();
      this.done = first;
      this.lastTenth = tenth(first);
    }

    @Override
    public void update(int done, String status) {
      this.done = done;
      this.status = status;
      int tenth = tenth(done);
      long now = System.nanoTime();
      if (tenth > lastTenth || now - lastPrinted >= intervalNanos) {
        print(now);
        lastTenth = tenth;
      }
      finished = done >= steps;
    }

    @Override
    public void close() {
      if (!finished && done > first) {
        print(System.nanoTime());
      }
    }

    private int tenth(int step) {
      int total = steps - first;
      return total <= 0 ? 10 : (int) (10L * (step - first) / total);
    }

    private void print(long now) {
      lastPrinted = now;
      double elapsed = (now - start) / 1e9;
      int total = steps - first;
      int percent = total <= 0 ? 100 : (int) (100L * (done - first) / total);
      out.printf("%s %d/%d (%d%%) %.0f s |%s%n", task, done, steps, percent, elapsed, status.isEmpty() ? "" : " " + status);
      out.flush();
    }
  }
}
