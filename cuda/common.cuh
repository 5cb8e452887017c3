// What every CUDA kernel file shares: the launch helper, error checks, grid sizes, strided
// indexing, device math and warp/block reductions. The same source compiles with nvcc for
// the GPU and with g++ over cuda/emu/ for the CPU (see cuda/emu/emu.h); code that only a
// GPU can run sits behind `#if !MTALAB_CUDA_EMU` with a plain fallback.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "autograd/kernels.h"
#include "autograd/strided.h"

#ifndef MTALAB_CUDA_EMU
#define MTALAB_CUDA_EMU 0
#endif

// Dynamic shared memory of a launch, as a T array named NAME.
#if MTALAB_CUDA_EMU
#define MTALAB_DYNAMIC_SMEM(T, NAME) T* NAME = static_cast<T*>(::mtalab::emu::dynamic_smem())
#else
#define MTALAB_DYNAMIC_SMEM(T, NAME)                    \
  extern __shared__ __align__(16) unsigned char mtalab_dynamic_smem_[]; \
  T* NAME = reinterpret_cast<T*>(mtalab_dynamic_smem_)
#endif

namespace mtalab::cuda {

// Throws "cuda: WHAT: <CUDA's error string> (<error name>)".
[[noreturn]] void fail(const std::string& what, cudaError_t e);
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(what, e);
}
std::string launch_shape(dim3 grid, dim3 block, size_t smem);  // "<<<(gx,gy,gz), (bx,by,bz), smem>>>"
// After a launch: reports a launch error naming the kernel and its shape; with
// MTALAB_CUDA_SYNC=1 also waits for the kernel, so a fault is reported by the kernel
// that caused it rather than by the next synchronising call.
void after_launch(const char* name, dim3 grid, dim3 block, size_t smem);

// kernel<<<grid, block, smem>>>(args...) on the backend's stream. An empty grid launches
// nothing (a zero-element tensor).
template <typename... KArgs, typename... Args>
void launch(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args&&... args) {
  if (!grid.x || !grid.y || !grid.z) return;
#if MTALAB_CUDA_EMU
  emu::launch(name, kernel, grid, block, smem, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, smem, 0>>>(std::forward<Args>(args)...);
  after_launch(name, grid, block, smem);
#endif
}

constexpr int kThreads = 256;
// Blocks for a grid-stride loop over n elements: enough to fill any GPU mtalab targets.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  return (unsigned)std::min<int64_t>((n + threads - 1) / threads, 2048);
}
// Blocks for one warp per row, `warps` warps a block.
inline unsigned grid_for_rows(int64_t rows, int warps) { return (unsigned)((rows + warps - 1) / warps); }

// Up to N strided operands over one coalesced shape: the flat element i of the shape
// maps to offset(k, i) in operand k.
constexpr int kMaxDims = 8;
template <int N>
struct Strided {
  int nd = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride[N][kMaxDims] = {};
  __host__ __device__ void offsets(int64_t i, int64_t out[N]) const {
    for (int k = 0; k < N; ++k) out[k] = 0;
    for (int d = nd - 1; d >= 0; --d) {
      const int64_t s = shape[d], q = i % s;
      i /= s;
      for (int k = 0; k < N; ++k) out[k] += q * stride[k][d];
    }
  }
};
// Coalesces the tensors' layouts over `shape` (autograd/strided.h); throws beyond kMaxDims.
template <int N>
Strided<N> make_strided(const Shape& shape, const std::vector<Shape>& strides, const char* kernel) {
  const Coalesced c = coalesce(shape, strides);
  if ((int)c.shape.size() > kMaxDims)
    throw std::invalid_argument(std::string(kernel) + ": a layout of " + std::to_string(c.shape.size()) +
                                " non-mergeable dims (the CUDA kernels take up to " + std::to_string(kMaxDims) + ")");
  Strided<N> s;
  s.nd = (int)c.shape.size();
  for (int d = 0; d < s.nd; ++d) {
    s.shape[d] = c.shape[d];
    for (int k = 0; k < N; ++k) s.stride[k][d] = c.strides[k][d];
  }
  return s;
}

// Row-major strided-batched GEMM through cuBLAS on `device` (cuda/matmul.cu):
//   C_i = alpha op(A_i) op(B_i) + beta C_i,  i < batch;  op(A) [M, K] (A stored [K, M] when
// ta), op(B) [K, N] (B stored [N, K] when tb); strides between batch entries in elements.
void gemm_rm(int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc, int64_t sc,
             int64_t batch);
void gemm_rm(int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
             int64_t lda, int64_t sa, const double* B, int64_t ldb, int64_t sb, double beta, double* C, int64_t ldc,
             int64_t sc, int64_t batch);
// bfloat16 operands on the tensor cores, float32 accumulation, C in float32 or bfloat16.
void gemm_rm(int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bfloat16* A,
             int64_t lda, int64_t sa, const bfloat16* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc,
             int64_t sc, int64_t batch);
void gemm_rm(int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bfloat16* A,
             int64_t lda, int64_t sa, const bfloat16* B, int64_t ldb, int64_t sb, float beta, bfloat16* C,
             int64_t ldc, int64_t sc, int64_t batch);

template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.raw());
}

// ---- device math: the full-precision functions, overloaded by type ----------------------
namespace dev {
__device__ __forceinline__ float exp(float x) { return expf(x); }
__device__ __forceinline__ double exp(double x) { return ::exp(x); }
__device__ __forceinline__ float log(float x) { return logf(x); }
__device__ __forceinline__ double log(double x) { return ::log(x); }
__device__ __forceinline__ float sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ float tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ float erf(float x) { return erff(x); }
__device__ __forceinline__ double erf(double x) { return ::erf(x); }
__device__ __forceinline__ float pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double pow(double x, double y) { return ::pow(x, y); }
__device__ __forceinline__ float abs(float x) { return fabsf(x); }
__device__ __forceinline__ double abs(double x) { return ::fabs(x); }
template <typename T>
__host__ __device__ __forceinline__ T min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
__host__ __device__ __forceinline__ T max(T a, T b) {
  return a < b ? b : a;
}
template <typename T>
__device__ __forceinline__ bool isnan(T x) {
  return x != x;
}
template <typename T>
__device__ __forceinline__ T inf() {
  return (T)INFINITY;
}
}  // namespace dev

// ---- reductions: fixed butterfly orders, so every run gives the same bits --------------
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Max that propagates NaN (as the CPU kernels do).
template <typename T>
__device__ __forceinline__ T max_nan(T a, T b) {
  return (a > b || dev::isnan(a)) ? a : b;
}
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) v = max_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024): every thread
// gets the total. `scratch` holds 32 values and is free again when this returns.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : T(0);
  v = warp_sum(v);
  __syncthreads();
  return v;
}

}  // namespace mtalab::cuda
