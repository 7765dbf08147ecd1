package io.bmtrain4j.examples;

import io.bmtrain4j.launch.LaunchSpec;
import io.bmtrain4j.launch.LocalLauncher;
import java.util.ArrayList;
import java.util.List;

/** {@code --nproc N}: the example re-runs itself as N ranks through the local launcher. */
final class Launch {
  private Launch() {}

  static int ranks(int nproc, Class<?> main, List<String> args) {
    return LocalLauncher.launch(LaunchSpec.of(nproc, main.getName(), args.toArray(new String[0])));
  }

  /** {@code args} without {@code option} and its value ({@code --nproc 2} or {@code --nproc=2}). */
  static List<String> without(String[] args, String option) {
    List<String> out = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals(option)) {
        i++;
      } else if (!args[i].startsWith(option + "=")) {
        out.add(args[i]);
      }
    }
    return out;
  }
}
