package io.bmtrain4j.launch;

import java.io.PrintStream;
import java.util.HashMap;
import java.util.Map;
import java.util.function.Consumer;

/**
 * Where the launcher sends what its ranks print. Ranks write whole lines ({@link #line}) and, for
 * progress bars, lines they redraw in place after a carriage return ({@link #redraw}).
 *
 * <p>On a terminal a redrawn line stays redrawn: it is written over itself, and a rank's ordinary
 * line is printed above it. Anywhere else (a log, CI, a test's list) each redraw would become a line
 * of its own, so only one per {@link #PLAIN_REDRAW_INTERVAL_NANOS} and rank is kept; the rank's
 * final line (ended by a newline) always is. Ranks learn which of the two the launcher is through
 * {@link Terminal#ENV}, and print plain progress lines when it is not a terminal.
 *
 * <p>Calls come from one reader thread per stream; implementations serialise them.
 */
public interface RankOutput {
  /** Keep at most one redraw per rank in this long when not on a terminal. */
  long PLAIN_REDRAW_INTERVAL_NANOS = 30_000_000_000L;

  /** A whole line, already prefixed with its rank. */
  void line(String prefixedLine);

  /** The current state of a line the rank redraws in place, already prefixed with its rank. */
  void redraw(String rankPrefix, String prefixedLine);

  /** Whether redraws reach a terminal, where they are written in place. */
  boolean isTerminal();

  /** Lines to {@code sink}, one call per line; redraws thinned out to one per rank every 30 s. */
  static RankOutput lines(Consumer<String> sink) {
    return new RankOutput() {
      private final Map<String, Long> lastRedraw = new HashMap<>();

      @Override
      public synchronized void line(String prefixedLine) {
        sink.accept(prefixedLine);
      }

      @Override
      public synchronized void redraw(String rankPrefix, String prefixedLine) {
        long now = System.nanoTime();
        Long last = lastRedraw.get(rankPrefix);
        if (last == null || now - last >= PLAIN_REDRAW_INTERVAL_NANOS) {
          lastRedraw.put(rankPrefix, now);
          sink.accept(prefixedLine);
        }
      }

      @Override
      public boolean isTerminal() {
        return false;
      }
    };
  }

  /** A terminal: redraws overwrite the bottom line, ordinary lines go above it. */
  static RankOutput terminal(PrintStream out) {
    return new RankOutput() {
      private String bottom; // the line being redrawn, or null

      @Override
      public synchronized void line(String prefixedLine) {
        // ESC[K clears what is left of a longer redraw.
        out.print("\r" + prefixedLine + "\033[K\n");
        if (bottom != null && !prefixedLine.startsWith(prefixOf(bottom))) {
          out.print(bottom);
        } else {
          bottom = null; // the rank finished its redrawn line with a newline
        }
        out.flush();
      }

      @Override
      public synchronized void redraw(String rankPrefix, String prefixedLine) {
        bottom = prefixedLine;
        out.print("\r" + prefixedLine + "\033[K");
        out.flush();
      }

      @Override
      public boolean isTerminal() {
        return true;
      }

      private String prefixOf(String prefixed) {
        int end = prefixed.indexOf("] ");
        return end < 0 ? prefixed : prefixed.substring(0, end + 2);
      }
    };
  }

  /** The launcher's console: a terminal when there is one, else plain lines to stdout. */
  static RankOutput console() {
    return Terminal.isInteractive() ? terminal(System.out) : lines(System.out::println);
  }
}
