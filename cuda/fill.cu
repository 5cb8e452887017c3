// CUDA fill of a contiguous tensor with one value (grid-stride loop).
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

template <typename T>
__global__ void fill_kernel_t(T* p, int64_t n, T v) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    p[i] = v;
}

template <typename T>
void fill_typed(const Tensor& t, double v) {
  const int64_t n = t.numel();
  launch("fill", fill_kernel_t<T>, grid_for(n), kThreads, 0, ptr<T>(t), n, (T)v);
}

void fill(const Tensor& t, double v) {
  MTALAB_DISPATCH_ALL(t.dtype(), [&] { fill_typed<type_t>(t, v); });
}

}  // namespace

MTALAB_REGISTER_KERNEL(fill_kernel, cuda, fill);

}  // namespace mtalab::cuda
