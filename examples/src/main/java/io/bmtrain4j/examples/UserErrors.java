package io.bmtrain4j.examples;

import io.bmtrain4j.store.CheckpointException;
import io.bmtrain4j.dist.CollectiveException;
import io.bmtrain4j.dist.EnvironmentException;
import io.bmtrain4j.natives.NativeLibraryException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.util.function.BooleanSupplier;
import picocli.CommandLine;

/**
 * How the mains report errors: a bad option is a usage error (exit 2, one line naming it); a
 * problem the user can fix (a checkpoint, a peer, a file, the natives) is one line "error: ..."
 * (exit 1); anything else is a bug and keeps its stack trace. {@code --debug} adds the trace to all.
 */
final class UserErrors {
  private UserErrors() {}

  /** A problem with what the user asked for, found after the options were parsed; its message says what to do. */
  static final class UserException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    UserException(String message) {
      super(message);
    }
  }

  static CommandLine install(CommandLine cl, BooleanSupplier debug) {
    cl.setParameterExceptionHandler((e, args) -> {
      PrintWriter err = cl.getErr();
      err.println(cl.getCommandName() + ": " + e.getMessage());
      err.println("Try '--help' for the options.");
      err.flush();
      return 2;
    });
    cl.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
      PrintWriter err = commandLine.getErr();
      if (debug.getAsBoolean()) {
        e.printStackTrace(err);
      }
      Throwable user = userError(e);
      if (user == null) {
        throw e; // a bug: picocli prints the whole trace
      }
      err.println(commandLine.getCommandName() + ": error: " + user.getMessage()
          + (debug.getAsBoolean() ? "" : " (--debug shows where)"));
      err.flush();
      return 1;
    });
    return cl;
  }

  /** Exceptions whose message is worth one line to the user; see {@link #userError}. */
  private static final java.util.List<Class<?>> USER_ERRORS = java.util.List.of(UserException.class, CheckpointException.class,
      CollectiveException.class, NativeLibraryException.class, UncheckedIOException.class, EnvironmentException.class);

  /**
   * The user-fixable error in {@code e}'s cause chain, or null. An exception thrown in a backward
   * hook reaches Java again through libtorch as a plain RuntimeException whose message holds the
   * original's class name and message; that text is recognised too.
   */
  static Throwable userError(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      String message = String.valueOf(t.getMessage());
      for (Class<?> type : USER_ERRORS) {
        int at = message.indexOf(type.getName() + ": ");
        if (at >= 0) {
          String original = message.substring(at + type.getName().length() + 2);
          int end = original.indexOf('\n');
          return new UserException(end < 0 ? original : original.substring(0, end));
        }
      }
      for (Class<?> type : USER_ERRORS) {
        if (type.isInstance(t)) {
          return t;
        }
      }
      if (t.getCause() == t) {
        break;
      }
    }
    return null;
  }
}
