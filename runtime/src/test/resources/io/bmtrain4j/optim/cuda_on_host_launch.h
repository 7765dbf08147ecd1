// After the kernels' source: cuLaunchKernel's call for the host. params holds one address per
// argument, as CudaKernels.Arguments builds it for the GPU.
typedef void (*AdamwKernel)(const Slices, double, double, double, double, double, float);

static void run_grid(AdamwKernel kernel, int blocks, int threads, void** params) {
  gridDim = HostDim3{(unsigned int) blocks, 1, 1};
  blockDim = HostDim3{(unsigned int) threads, 1, 1};
  for (int b = 0; b < blocks; b++) {
    blockIdx = HostDim3{(unsigned int) b, 0, 0};
    for (int t = 0; t < threads; t++) {
      threadIdx = HostDim3{(unsigned int) t, 0, 0};
      kernel(*(const Slices*) params[0], *(const double*) params[1], *(const double*) params[2],
             *(const double*) params[3], *(const double*) params[4], *(const double*) params[5],
             *(const float*) params[6]);
    }
  }
}

extern "C" void host_launch(int bf16, int blocks, int threads, void** params) {
  run_grid(bf16 ? adamw_bf16 : adamw_fp16, blocks, threads, params);
}
