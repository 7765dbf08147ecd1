package io.bmtrain4j.examples;

import org.bytedeco.pytorch.global.torch;

/** The check behind {@code --device cuda}: a build with CUDA natives and a GPU to run on. */
final class Devices {
  private Devices() {}

  static void requireCuda(String device) {
    if (!System.getProperty("org.bytedeco.javacpp.platform.extension", "").contains("gpu") || !torch.hasCUDA()) {
      throw new UserErrors.UserException("--device " + device + " needs libtorch's CUDA natives, and this build has the"
          + " CPU natives only: build with 'mvn -P gpu install' and run java with"
          + " -Dorg.bytedeco.javacpp.platform.extension=-gpu (README, 'On GPUs')");
    }
    if (!torch.cuda_is_available()) {
      throw new UserErrors.UserException("--device " + device + ": libtorch sees no CUDA device on this machine"
          + " (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
    }
  }

  /** {@code device} ("cuda:N") must be one of this machine's GPUs; {@code asked} says where N came from. */
  static void requireIndex(String device, String asked) {
    int index = Integer.parseInt(device.substring("cuda:".length()));
    int count = torch.cuda_device_count();
    if (index >= count) {
      throw new UserErrors.UserException(asked + " needs GPU " + index + ", but this machine has " + count + " (cuda:0 to cuda:"
          + (count - 1) + "): start at most " + count + " ranks per machine, or pick an existing device");
    }
  }
}
