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
  switch (t.dtype()) {
    case DType::f32: return fill_typed<float>(t, v);
    case DType::f64: return fill_typed<double>(t, v);
    case DType::i32: return fill_typed<int32_t>(t, v);
    case DType::i64: return fill_typed<int64_t>(t, v);
  }
}

}  // namespace

MTALAB_REGISTER_KERNEL(fill_kernel, cuda, fill);

}  // namespace mtalab::cuda
