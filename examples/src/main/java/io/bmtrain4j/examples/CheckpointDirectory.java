package io.bmtrain4j.examples;

import io.bmtrain4j.store.ShardedCheckpoint;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The checks on {@code --checkpoint-dir} made before training, rather than at the first save after it. */
final class CheckpointDirectory {
  private CheckpointDirectory() {}

  /** Why checkpoints cannot be written to (or resumed from) {@code dir}, to follow "--checkpoint-dir "; null if they can. */
  static String problem(Path dir, boolean resume) {
    if (Files.exists(dir) && !Files.isDirectory(dir)) {
      return dir + " is a file, not a directory: name a directory";
    }
    try {
      Files.createDirectories(dir);
      Path probe = Files.createTempFile(dir, ".write-probe-", ".tmp");
      Files.delete(probe);
    } catch (IOException e) {
      return dir + " cannot be written to (" + e.getClass().getSimpleName() + ": " + e.getMessage() + ")";
    }
    if (resume && !ShardedCheckpoint.exists(dir)) {
      return dir + " holds no checkpoint to --resume from (no 'latest' file)";
    }
    return null;
  }
}
