// CUDA fused AdamW update, in place, one thread per element; the CPU's formula
// (autograd/kernels.h, autograd/cpu/adamw.cpp) term for term.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

// T is the storage type, A = acc_t<T> the arithmetic one (mixed-precision training keeps
// float32 master weights and state; a bfloat16 parameter is updated in float32, rounded once).
template <typename T, typename A = acc_t<T>>
__global__ void adamw_kernel_t(T* p, const T* g, T* m, T* v, int64_t n, A lr, A b1, A b2, A eps, A decay, A ic1,
                               A ic2) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const A gi = (A)g[i];
    const A mi = b1 * (A)m[i] + (A(1) - b1) * gi, vi = b2 * (A)v[i] + (A(1) - b2) * gi * gi;
    m[i] = T(mi);
    v[i] = T(vi);
    p[i] = T((A)p[i] * decay - lr * (mi * ic1) / (dev::sqrt(vi * ic2) + eps));
  }
}

void adamw(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, AdamWArgs a) {
  if (!p.is_contiguous() || !g.is_contiguous() || !m.is_contiguous() || !v.is_contiguous())
    throw std::logic_error("adamw kernel: tensors must be contiguous");
  MTALAB_DISPATCH_FLOATING(p.dtype(), "adamw", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const int64_t n = p.numel();
    launch("adamw", adamw_kernel_t<T>, grid_for(n), kThreads, 0, ptr<T>(p), ptr<const T>(g), ptr<T>(m), ptr<T>(v), n,
           (A)a.lr, (A)a.beta1, (A)a.beta2, (A)a.eps, (A)(1.0 - a.lr * a.weight_decay), (A)(1.0 / a.c1),
           (A)(1.0 / a.c2));
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(adamw_kernel, cuda, adamw);

}  // namespace mtalab::cuda
