package io.bmtrain4j.examples;

import io.bmtrain4j.checkpoint.CheckpointException;
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

  /** The user-fixable error in {@code e}'s cause chain (libtorch wraps exceptions thrown in hooks), or null. */
  static Throwable userError(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof UserException || t instanceof CheckpointException || t instanceof CollectiveException
          || t instanceof NativeLibraryException || t instanceof UncheckedIOException || t instanceof EnvironmentException) {
        return t;
      }
      if (t.getCause() == t) {
        break;
      }
    }
    return null;
  }
}
