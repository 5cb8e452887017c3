// The CUDA backend's foundation: device memory, host<->device copies, fill and
// contiguous copies/casts. The op kernels (cuBLAS GEMM, softmax, norms, the MTA ops)
// register into the same KernelTables as they are written; until then an op on a cuda
// tensor fails with "kernel 'x' is not implemented for device cuda:0".
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "autograd/backend.h"
#include "autograd/kernels.h"

namespace mtalab {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("cuda: ") + what + ": " + cudaGetErrorString(e));
}

void* cuda_alloc(size_t n, int dev) {
  check(cudaSetDevice(dev), "cudaSetDevice");
  void* p = nullptr;
  check(cudaMalloc(&p, n), "cudaMalloc");
  return p;
}
void cuda_free(void* p, size_t, int dev) {
  cudaSetDevice(dev);
  cudaFree(p);
}
void to_host(void* dst, const void* src, size_t n, int dev) {
  check(cudaSetDevice(dev), "cudaSetDevice");
  check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "copy to host");
}
void from_host(void* dst, const void* src, size_t n, int dev) {
  check(cudaSetDevice(dev), "cudaSetDevice");
  check(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "copy from host");
}

template <typename T>
__global__ void fill_kernel_t(T* p, int64_t n, T v) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) p[i] = v;
}
template <typename S, typename D>
__global__ void cast_kernel(const S* s, D* d, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    d[i] = (D)s[i];
}

int blocks(int64_t n) { return (int)std::min<int64_t>((n + 255) / 256, 4096); }

void cuda_fill(const Tensor& t, double v) {
  const int64_t n = t.numel();
  if (!n) return;
  switch (t.dtype()) {
    case DType::f32: fill_kernel_t<<<blocks(n), 256>>>((float*)t.raw(), n, (float)v); break;
    case DType::f64: fill_kernel_t<<<blocks(n), 256>>>((double*)t.raw(), n, v); break;
    case DType::i32: fill_kernel_t<<<blocks(n), 256>>>((int32_t*)t.raw(), n, (int32_t)v); break;
    case DType::i64: fill_kernel_t<<<blocks(n), 256>>>((int64_t*)t.raw(), n, (int64_t)v); break;
  }
  check(cudaGetLastError(), "fill");
}

template <typename S>
void cast_from(const Tensor& src, const Tensor& dst) {
  const int64_t n = src.numel();
  const S* s = (const S*)src.raw();
  switch (dst.dtype()) {
    case DType::f32: cast_kernel<<<blocks(n), 256>>>(s, (float*)dst.raw(), n); break;
    case DType::f64: cast_kernel<<<blocks(n), 256>>>(s, (double*)dst.raw(), n); break;
    case DType::i32: cast_kernel<<<blocks(n), 256>>>(s, (int32_t*)dst.raw(), n); break;
    case DType::i64: cast_kernel<<<blocks(n), 256>>>(s, (int64_t*)dst.raw(), n); break;
  }
}

void cuda_copy(const Tensor& src, const Tensor& dst) {
  if (!src.is_contiguous() || !dst.is_contiguous())
    throw std::runtime_error("kernel 'copy' is not implemented for strided tensors on " + src.device().str() +
                             " yet; make them contiguous on the CPU first");
  if (!src.numel()) return;
  if (src.dtype() == dst.dtype()) {
    check(cudaMemcpy(dst.raw(), src.raw(), src.numel() * dtype_size(src.dtype()), cudaMemcpyDeviceToDevice), "copy");
    return;
  }
  switch (src.dtype()) {
    case DType::f32: cast_from<float>(src, dst); break;
    case DType::f64: cast_from<double>(src, dst); break;
    case DType::i32: cast_from<int32_t>(src, dst); break;
    case DType::i64: cast_from<int64_t>(src, dst); break;
  }
  check(cudaGetLastError(), "cast");
}

}  // namespace

bool cuda_backend_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

void cuda_backend_init() {
  if (!cuda_backend_available())
    throw std::runtime_error("device cuda: this build has the CUDA backend but no GPU is visible");
  Allocator& a = allocator(DeviceKind::cuda);
  a.allocate = cuda_alloc;
  a.deallocate = cuda_free;
  a.copy_to_host = to_host;
  a.copy_from_host = from_host;
  fill_kernel.set(DeviceKind::cuda, cuda_fill);
  copy_kernel.set(DeviceKind::cuda, cuda_copy);
}

}  // namespace mtalab
