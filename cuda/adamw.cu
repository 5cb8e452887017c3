// CUDA fused AdamW update, in place, one thread per element; the CPU's formula
// (autograd/kernels.h, autograd/cpu/adamw.cpp) term for term.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

template <typename T>
__global__ void adamw_kernel_t(T* p, const T* g, T* m, T* v, int64_t n, T lr, T b1, T b2, T eps, T decay, T ic1,
                               T ic2) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const T gi = g[i];
    const T mi = b1 * m[i] + (T(1) - b1) * gi, vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - lr * (mi * ic1) / (dev::sqrt(vi * ic2) + eps);
  }
}

void adamw(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, AdamWArgs a) {
  if (!p.is_contiguous() || !g.is_contiguous() || !m.is_contiguous() || !v.is_contiguous())
    throw std::logic_error("adamw kernel: tensors must be contiguous");
  MTALAB_DISPATCH_FLOAT(p.dtype(), "adamw", [&] {
    using T = scalar_t;
    const int64_t n = p.numel();
    launch("adamw", adamw_kernel_t<T>, grid_for(n), kThreads, 0, ptr<T>(p), ptr<const T>(g), ptr<T>(m), ptr<T>(v), n,
           (T)a.lr, (T)a.beta1, (T)a.beta2, (T)a.eps, (T)(1.0 - a.lr * a.weight_decay), (T)(1.0 / a.c1),
           (T)(1.0 / a.c2));
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(adamw_kernel, cuda, adamw);

}  // namespace mtalab::cuda
