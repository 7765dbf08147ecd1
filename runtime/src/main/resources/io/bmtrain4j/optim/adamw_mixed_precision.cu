// AdamW over one parameter slice: fp32 master weights and moments updated in place from the
// slice's bf16 or fp16 gradient, read as it is. libtorch's fused AdamW needs the gradient in the
// masters' dtype, which costs an fp32 copy of every gradient (written, then read again) before
// each step; reading the 2-byte gradient here moves 26 bytes per parameter instead of 34.
//
// The formula is PyTorch's fused AdamW (torch.optim.AdamW(fused=True)): decoupled weight decay,
// then the moments, then the bias-corrected step. It runs in fp32 with constants rounded from
// double, where PyTorch does some products in double: results agree to a few ulps per step. No headers: NVRTC compiles this
// at run time without the CUDA toolkit's include directory (see io.bmtrain4j.internal.CudaKernels).

__device__ __forceinline__ float bf16_to_float(unsigned int bits) {
  return __uint_as_float(bits << 16);
}

__device__ __forceinline__ float fp16_to_float(unsigned int bits) {
  float f;
  unsigned short h = (unsigned short) bits;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}

template <bool BF16>
__device__ __forceinline__ float gradient(unsigned int bits, float grad_scale) {
  float g = BF16 ? bf16_to_float(bits & 0xffffu) : fp16_to_float(bits & 0xffffu);
  return grad_scale == 1.0f ? g : g / grad_scale;
}

// The hyperparameters arrive in double, as PyTorch holds them: 1 - beta2 taken in float would be
// off by 1.3e-5 relative (0.999f is not 0.999), and so would every second moment.
struct Hyper {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, lr_weight_decay, step_size, bias_correction2_sqrt;
};

__device__ __forceinline__ void adamw(float& p, float g, float& m, float& v, const Hyper& h) {
  p -= h.lr_weight_decay * p;
  m = h.beta1 * m + h.one_minus_beta1 * g;
  v = h.beta2 * v + h.one_minus_beta2 * g * g;
  float denom = sqrtf(v) / h.bias_correction2_sqrt + h.eps;
  p -= h.step_size * m / denom;
}

// VEC4: p, m and v are 16-byte aligned and g 8-byte aligned, so four elements move per load; the
// last n % 4 elements go one by one. Grid-stride loops: the grid follows the GPU, not n.
template <bool BF16, bool VEC4>
__device__ void update(float* __restrict__ p, const unsigned short* __restrict__ g, float* __restrict__ m,
                       float* __restrict__ v, const float* __restrict__ step, long long n, double lr, double beta1,
                       double beta2, double eps, double weight_decay, float grad_scale) {
  // The step count is the parameter's own (a tensor the caller has already incremented), as in PyTorch.
  const double t = (double) *step;
  Hyper h;
  h.beta1 = (float) beta1;
  h.one_minus_beta1 = (float) (1.0 - beta1);
  h.beta2 = (float) beta2;
  h.one_minus_beta2 = (float) (1.0 - beta2);
  h.eps = (float) eps;
  h.lr_weight_decay = (float) (lr * weight_decay);
  h.step_size = (float) (lr / (1.0 - pow(beta1, t)));
  h.bias_correction2_sqrt = (float) sqrt(1.0 - pow(beta2, t));
  const long long stride = (long long) gridDim.x * blockDim.x;
  long long first = (long long) blockIdx.x * blockDim.x + threadIdx.x;
  long long scalar_from = 0;
  if (VEC4) {
    const long long n4 = n / 4;
    float4* p4 = reinterpret_cast<float4*>(p);
    float4* m4 = reinterpret_cast<float4*>(m);
    float4* v4 = reinterpret_cast<float4*>(v);
    const uint2* g4 = reinterpret_cast<const uint2*>(g);
    for (long long i = first; i < n4; i += stride) {
      float4 pp = p4[i];
      float4 mm = m4[i];
      float4 vv = v4[i];
      uint2 gg = g4[i];
      adamw(pp.x, gradient<BF16>(gg.x, grad_scale), mm.x, vv.x, h);
      adamw(pp.y, gradient<BF16>(gg.x >> 16, grad_scale), mm.y, vv.y, h);
      adamw(pp.z, gradient<BF16>(gg.y, grad_scale), mm.z, vv.z, h);
      adamw(pp.w, gradient<BF16>(gg.y >> 16, grad_scale), mm.w, vv.w, h);
      p4[i] = pp;
      m4[i] = mm;
      v4[i] = vv;
    }
    scalar_from = n4 * 4;
  }
  for (long long i = scalar_from + first; i < n; i += stride) {
    float pp = p[i];
    float mm = m[i];
    float vv = v[i];
    adamw(pp, gradient<BF16>(g[i], grad_scale), mm, vv, h);
    p[i] = pp;
    m[i] = mm;
    v[i] = vv;
  }
}

#define ADAMW_KERNEL(NAME, BF16, VEC4)                                                                   \
  extern "C" __global__ void NAME(float* p, const unsigned short* g, float* m, float* v, const float* step, \
                                  long long n, double lr, double beta1, double beta2, double eps,          \
                                  double weight_decay, float grad_scale) {                                \
    update<BF16, VEC4>(p, g, m, v, step, n, lr, beta1, beta2, eps, weight_decay, grad_scale);             \
  }

ADAMW_KERNEL(adamw_bf16, true, false)
ADAMW_KERNEL(adamw_bf16_vec4, true, true)
ADAMW_KERNEL(adamw_fp16, false, false)
ADAMW_KERNEL(adamw_fp16_vec4, false, true)
