// AdamW over parameter slices: fp32 master weights and moments updated in place from each slice's
// bf16 or fp16 gradient, read as it is. libtorch's fused AdamW needs the gradient in the masters'
// dtype, which costs an fp32 copy of every gradient (written, then read again) before each step;
// reading the 2-byte gradient here moves 26 bytes per parameter instead of 34.
//
// The formula is PyTorch's fused AdamW (torch.optim.AdamW(fused=True)): decoupled weight decay,
// then the moments, then the bias-corrected step. It runs in fp32 with constants rounded from
// double, where PyTorch does some products in double: results agree to a few ulps per step.
//
// One launch updates up to MAX_SLICES slices, as PyTorch's multi_tensor_apply does: the slices'
// addresses travel in the kernel's parameters, and each block finds its slice from its index. No
// headers: NVRTC compiles this at run time without the CUDA toolkit's include directory (see
// io.bmtrain4j.internal.CudaKernels).
//
// The launch's slices, as 8-byte words: MixedPrecisionAdamW writes them and prepends the #defines
// of their byte offsets (SLICES_*), so the layout is written down once, on the Java side. Per
// slice s, device addresses: the fp32 master at P + 8s, the bf16 or fp16 gradient at G + 8s (the
// kernel says which), the moments at M + 8s and V + 8s, the step count (a float the caller has
// incremented, PyTorch's order) at STEP + 8s. Then values: the element count at N + 8s, and the
// slice's first block (an int) at FIRST_BLOCK + 4s; slice s takes blocks [first(s), first(s + 1)).
// The slice count is an int at COUNT.
struct Slices {
  unsigned long long word[SLICES_BYTES / 8];
};
// CUDA's limit on a kernel's parameters: the table, five doubles and a float.
static_assert(sizeof(Slices) + 5 * sizeof(double) + sizeof(float) <= 4096, "MAX_SLICES too large for 4 KiB of parameters");

__device__ __forceinline__ unsigned long long word_at(const Slices& s, int offset, int slice) {
  return s.word[(offset + 8 * slice) / 8];
}

__device__ __forceinline__ int int_at(const Slices& s, int offset) {
  return (int) (unsigned int) (s.word[offset / 8] >> (8 * (offset % 8)));
}

__device__ __forceinline__ int first_block(const Slices& s, int slice) {
  return int_at(s, SLICES_OFFSET_FIRST_BLOCK + 4 * slice);
}

__device__ __forceinline__ float bf16_to_float(unsigned int bits) {
  return __uint_as_float(bits << 16);
}

// IEEE half to float by bits, exact for every value. The same code on the GPU and on the host,
// where a CPU test runs the kernels (MixedPrecisionAdamWHostTest): a few integer operations per
// element cost nothing in a kernel bound by memory.
__device__ __forceinline__ float fp16_to_float(unsigned int bits) {
  const unsigned int sign = (bits & 0x8000u) << 16, exponent = (bits >> 10) & 0x1fu, mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) {
    return __uint_as_float(sign | 0x7f800000u | (mantissa << 13));  // infinity, NaN
  }
  if (exponent == 0) {  // zero and subnormals: mantissa x 2^-24, exact in float
    const float magnitude = (float) mantissa * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  return __uint_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
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

// One slice, by the threads from `first` on in steps of `stride`. Where p, m and v are 16-byte
// aligned and g 8-byte aligned (nearly always), four elements move per load and the last n % 4
// go one by one; otherwise all go one by one.
template <bool BF16>
__device__ void update(float* __restrict__ p, const unsigned short* __restrict__ g, float* __restrict__ m,
                       float* __restrict__ v, long long n, long long first, long long stride, const Hyper& h,
                       float grad_scale) {
  long long scalar_from = 0;
  const bool vec4 = (((unsigned long long) p | (unsigned long long) m | (unsigned long long) v) % 16 == 0)
                    && ((unsigned long long) g % 8 == 0);
  if (vec4) {
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

template <bool BF16>
__device__ void update_slices(const Slices& slices, double lr, double beta1, double beta2, double eps,
                              double weight_decay, float grad_scale) {
  // This block's slice: the last s with first_block(s) <= blockIdx.x (binary search; count <= MAX_SLICES).
  const int block = (int) blockIdx.x;
  int lo = 0, hi = int_at(slices, SLICES_OFFSET_COUNT) - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first_block(slices, mid) <= block) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int s = lo;
  const double t = (double) *reinterpret_cast<const float*>(word_at(slices, SLICES_OFFSET_STEP, s));
  Hyper h;
  h.beta1 = (float) beta1;
  h.one_minus_beta1 = (float) (1.0 - beta1);
  h.beta2 = (float) beta2;
  h.one_minus_beta2 = (float) (1.0 - beta2);
  h.eps = (float) eps;
  h.lr_weight_decay = (float) (lr * weight_decay);
  h.step_size = (float) (lr / (1.0 - pow(beta1, t)));
  h.bias_correction2_sqrt = (float) sqrt(1.0 - pow(beta2, t));
  const int blocks = first_block(slices, s + 1) - first_block(slices, s);
  const long long first = (long long) (block - first_block(slices, s)) * blockDim.x + threadIdx.x;
  update<BF16>(reinterpret_cast<float*>(word_at(slices, SLICES_OFFSET_P, s)),
               reinterpret_cast<const unsigned short*>(word_at(slices, SLICES_OFFSET_G, s)),
               reinterpret_cast<float*>(word_at(slices, SLICES_OFFSET_M, s)),
               reinterpret_cast<float*>(word_at(slices, SLICES_OFFSET_V, s)),
               (long long) word_at(slices, SLICES_OFFSET_N, s), first, (long long) blocks * blockDim.x, h, grad_scale);
}

extern "C" __global__ void adamw_bf16(const Slices slices, double lr, double beta1, double beta2, double eps,
                                      double weight_decay, float grad_scale) {
  update_slices<true>(slices, lr, beta1, beta2, eps, weight_decay, grad_scale);
}

extern "C" __global__ void adamw_fp16(const Slices slices, double lr, double beta1, double beta2, double eps,
                                      double weight_decay, float grad_scale) {
  update_slices<false>(slices, lr, beta1, beta2, eps, weight_decay, grad_scale);
}
