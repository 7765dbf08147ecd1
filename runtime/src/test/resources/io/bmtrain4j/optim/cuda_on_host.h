// Just enough of CUDA for a kernel without shared memory or barriers to run on the host, one
// thread after another: MixedPrecisionAdamWHostTest compiles the AdamW kernels with this in front
// and checks them against libtorch's fused AdamW on a machine without a GPU. Each element is
// written by exactly one thread, so running the threads in turn gives the GPU's results.
#include <cmath>
#include <cstring>

#define __device__
#define __global__
#define __forceinline__ inline

struct HostDim3 {
  unsigned int x, y, z;
};
static HostDim3 blockIdx, threadIdx, blockDim, gridDim;

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned int x, y;
};

static inline float __uint_as_float(unsigned int bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
