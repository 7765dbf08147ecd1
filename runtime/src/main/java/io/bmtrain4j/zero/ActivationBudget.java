package io.bmtrain4j.zero;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The peak memory a step may use on each rank's device, which the runtime fills with kept
 * activations: it measures one step with every block recomputing, then keeps the graphs of as
 * many blocks (or of their costly parts) as fit ({@link ActivationPlanner}). Either a number of
 * bytes or a fraction of the device's capacity (a GPU's memory; the host's on the CPU).
 */
public record ActivationBudget(long bytes, double deviceFraction) {
  /** 90% of the device: what a step may use by default when the budget is on. */
  public static final double DEFAULT_FRACTION = 0.9;

  public ActivationBudget {
    if ((bytes > 0) == (deviceFraction > 0)) {
      throw new IllegalArgumentException("an activation budget is either bytes or a fraction of the device, got "
          + bytes + " bytes and fraction " + deviceFraction);
    }
    if (deviceFraction > 1) {
      throw new IllegalArgumentException("an activation budget's fraction of the device is at most 1, got " + deviceFraction);
    }
  }

  public static ActivationBudget ofBytes(long bytes) {
    return new ActivationBudget(bytes, 0);
  }

  public static ActivationBudget ofDevice(double fraction) {
    return new ActivationBudget(0, fraction);
  }

  private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*(%|B|KiB|MiB|GiB|TiB)?");

  /**
   * {@code 90%} (of the device), {@code 60GiB}, {@code 512MiB} or a number of bytes; the error
   * names what is accepted.
   */
  public static ActivationBudget parse(String text) {
    Matcher m = SIZE.matcher(text.trim());
    if (!m.matches()) {
      throw new IllegalArgumentException("activation budget '" + text
          + "' is not a size: give a share of the device such as 90%, or a size such as 60GiB, 512MiB or 1000000000");
    }
    double value = Double.parseDouble(m.group(1));
    String unit = m.group(2) == null ? "B" : m.group(2);
    if (unit.equals("%")) {
      if (value <= 0 || value > 100) {
        throw new IllegalArgumentException("activation budget '" + text + "' must be a share above 0% and at most 100%");
      }
      return ofDevice(value / 100);
    }
    int shift = switch (unit) {
      case "KiB" -> 10;
      case "MiB" -> 20;
      case "GiB" -> 30;
      case "TiB" -> 40;
      default -> 0;
    };
    long bytes = (long) (value * (1L << shift));
    if (bytes <= 0) {
      throw new IllegalArgumentException("activation budget '" + text + "' must be more than 0 bytes");
    }
    return ofBytes(bytes);
  }

  /** The budget in bytes on a device of {@code capacityBytes}. */
  long resolve(long capacityBytes) {
    return bytes > 0 ? bytes : (long) (deviceFraction * capacityBytes);
  }

  @Override
  public String toString() {
    return bytes > 0 ? String.format(Locale.ROOT, "%.2f GiB", bytes / (double) (1L << 30))
        : String.format(Locale.ROOT, "%.0f%% of the device", deviceFraction * 100);
  }
}
