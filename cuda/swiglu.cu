// CUDA SwiGLU gate (autograd/kernels.h), one thread per element. Reference (the CPU's loop,
// autograd/cpu/swiglu.cpp):
//   y = a sigmoid(a) b;   ga = g b s (1 + a (1 - s)),  gb = g a s   with s = sigmoid(a)
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

// T is the storage type, A = acc_t<T> the arithmetic one (bfloat16 in float32, rounded once).
template <typename T, typename A = acc_t<T>>
__global__ void swiglu_fwd(const T* a, const T* b, T* y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const A x = (A)a[i];
    y[i] = T(x / (A(1) + dev::exp(-x)) * (A)b[i]);
  }
}
template <typename T, typename A = acc_t<T>>
__global__ void swiglu_bwd_t(const T* a, const T* b, const T* g, T* ga, T* gb, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const A x = (A)a[i], gv = (A)g[i], s = A(1) / (A(1) + dev::exp(-x));
    if (ga) ga[i] = T(gv * (A)b[i] * (s * (A(1) + x * (A(1) - s))));
    if (gb) gb[i] = T(gv * x * s);
  }
}

void swiglu(const Tensor& a, const Tensor& b, const Tensor& y) {
  MTALAB_DISPATCH_FLOATING(a.dtype(), "swiglu", [&] {
    const int64_t n = a.numel();
    launch("swiglu", swiglu_fwd<scalar_t>, grid_for(n), kThreads, 0, ptr<const scalar_t>(a), ptr<const scalar_t>(b),
           ptr<scalar_t>(y), n);
  });
}
void swiglu_bwd(const Tensor& a, const Tensor& b, const Tensor& g, const Tensor& ga, const Tensor& gb) {
  MTALAB_DISPATCH_FLOATING(a.dtype(), "swiglu_backward", [&] {
    using T = scalar_t;
    const int64_t n = a.numel();
    launch("swiglu_backward", swiglu_bwd_t<T>, grid_for(n), kThreads, 0, ptr<const T>(a), ptr<const T>(b),
           ptr<const T>(g), ga.defined() ? ptr<T>(ga) : (T*)nullptr, gb.defined() ? ptr<T>(gb) : (T*)nullptr, n);
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(swiglu_kernel, cuda, swiglu);
MTALAB_REGISTER_KERNEL(swiglu_bwd_kernel, cuda, swiglu_bwd);

}  // namespace mtalab::cuda
