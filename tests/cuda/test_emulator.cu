// The CUDA emulator's own checks (cuda/emu/emu.h), each against a seeded bug of the kind
// it exists to catch: a kernel that is wrong in a way a GPU would hide or leave
// undefined must fail here, and its correct twin must pass in every thread order. Built
// only in the emulated build (these kernels are buggy on purpose).
#include <doctest/doctest.h>
#include <cublas_v2.h>

#include <string>
#include <vector>

#include "cuda/common.cuh"

using namespace mtalab;
using mtalab::cuda::launch;

namespace {

// Device buffer of n floats (all-ones bytes, i.e. NaN, as cudaMalloc gives them here).
struct Buffer {
  float* p = nullptr;
  size_t n;
  explicit Buffer(size_t count) : n(count) { REQUIRE(cudaMalloc(&p, n * sizeof(float)) == cudaSuccess); }
  ~Buffer() { cudaFree(p); }
  void set(const std::vector<float>& v) { cudaMemcpy(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice); }
  std::vector<float> get() const {
    std::vector<float> v(n);
    cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost);
    return v;
  }
};

// The message of the KernelError f throws, or "" when it runs cleanly.
template <typename F>
std::string kernel_error(F&& f) {
  try {
    f();
  } catch (const emu::KernelError& e) {
    return e.what();
  }
  return "";
}

struct OrderGuard {
  emu::Order saved = emu::order();
  ~OrderGuard() { emu::set_order(saved, 7); }
};

// Block tree reduction of 256 values; `sync` false drops the __syncthreads between levels.
__global__ void tree_sum(const float* x, float* out, bool sync) {
  __shared__ float s[256];
  const int t = threadIdx.x;
  s[t] = x[t];
  __syncthreads();
  for (int w = 128; w > 0; w /= 2) {
    if (t < w) s[t] += s[t + w];
    if (sync) __syncthreads();
  }
  if (t == 0) out[0] = s[0];
}

__global__ void early_return(float* out) {
  if (threadIdx.x >= 32) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void barrier_in_branches(float* out) {
  if (threadIdx.x % 2) {
    out[threadIdx.x] = 1;
    __syncthreads();
  } else {
    out[threadIdx.x] = 2;
    __syncthreads();
  }
}

// Each lane reads its neighbour's shared value; `sync` false leaves out the __syncwarp.
// (base differs per launch: static shared memory keeps the last launch's values here.)
__global__ void neighbour(float* out, bool sync, float base) {
  __shared__ float s[32];
  const int t = threadIdx.x;
  s[t] = base + (float)t;
  if (sync) __syncwarp();
  out[t] = s[t ^ 1];
}

__global__ void half_warp_shuffle(float* out) {
  float v = (float)threadIdx.x;
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void shuffle_sum(float* out) {
  float v = (float)threadIdx.x;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  out[threadIdx.x] = v;
}

__global__ void accumulate(float* out) { atomicAdd(out, 1.0f); }

__global__ void uses_dynamic_smem(float* out) {
  MTALAB_DYNAMIC_SMEM(float, s);
  s[threadIdx.x] = (float)threadIdx.x;
  __syncthreads();
  out[threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}

}  // namespace

TEST_CASE("emulator: a missing __syncthreads in a tree reduction is wrong in forward order, fine in reverse") {
  OrderGuard g;
  Buffer x(256), out(1);
  std::vector<float> ones(256, 1.0f);
  x.set(ones);
  auto total = [&](emu::Order o, bool sync) {
    emu::set_order(o, 3);
    launch("tree_sum", tree_sum, 1, 256, 0, x.p, out.p, sync);
    return out.get()[0];
  };
  for (emu::Order o : {emu::Order::forward, emu::Order::reverse, emu::Order::random}) {
    CAPTURE(emu::order_name(o));
    CHECK(total(o, true) == 256.0f);
  }
  CHECK(total(emu::Order::forward, false) != 256.0f);  // the order that exposes it
  CHECK(total(emu::Order::reverse, false) == 256.0f);  // and the one that hides it: all orders run in CI
}

TEST_CASE("emulator: divergent barriers are reported with the kernel, block, thread and line") {
  Buffer out(64);
  std::string e = kernel_error([&] { launch("early_return", early_return, 2, 64, 0, out.p); });
  CHECK(e.find("kernel 'early_return'") != std::string::npos);
  CHECK(e.find("divergent barrier") != std::string::npos);
  CHECK(e.find("32 threads exited while 32 wait") != std::string::npos);
  CHECK(e.find("test_emulator.cu:") != std::string::npos);
  e = kernel_error([&] { launch("barrier_in_branches", barrier_in_branches, 1, 64, 0, out.p); });
  CHECK(e.find("different barriers") != std::string::npos);
}

TEST_CASE("emulator: warp-synchronous code without __syncwarp is wrong in every order") {
  OrderGuard g;
  Buffer out(32);
  for (emu::Order o : {emu::Order::forward, emu::Order::reverse, emu::Order::random}) {
    CAPTURE(emu::order_name(o));
    emu::set_order(o, 5);
    launch("neighbour", neighbour, 1, 32, 0, out.p, true, 0.0f);
    std::vector<float> v = out.get();
    bool right = true;
    for (int t = 0; t < 32; ++t) right &= v[t] == (float)(t ^ 1);
    CHECK(right);
    launch("neighbour", neighbour, 1, 32, 0, out.p, false, 100.0f);
    v = out.get();
    right = true;
    for (int t = 0; t < 32; ++t) right &= v[t] == 100.0f + (float)(t ^ 1);
    CHECK(!right);
  }
}

TEST_CASE("emulator: shuffles compute CUDA's results and refuse masks naming absent lanes") {
  Buffer out(32);
  launch("shuffle_sum", shuffle_sum, 1, 32, 0, out.p);
  CHECK(out.get()[0] == 496.0f);  // 0 + 1 + ... + 31
  std::string e = kernel_error([&] { launch("half_warp_shuffle", half_warp_shuffle, 1, 32, 0, out.p); });
  CHECK(e.find("__shfl_xor_sync") != std::string::npos);
  CHECK(e.find("which has exited") != std::string::npos);
  e = kernel_error([&] { launch("shuffle_sum", shuffle_sum, 1, 20, 0, out.p); });  // a 20-thread warp
  CHECK(e.find("does not exist") != std::string::npos);
}

TEST_CASE("emulator: launch limits, host pointers and dynamic shared memory") {
  Buffer out(1024);
  CHECK(kernel_error([&] { launch("accumulate", accumulate, 1, 2048, 0, out.p); }).find("2048 threads") !=
        std::string::npos);
  CHECK(kernel_error([&] { launch("accumulate", accumulate, dim3(1, 70000), 32, 0, out.p); }).find("grid") !=
        std::string::npos);
  std::vector<float> host(32);
  CHECK(kernel_error([&] { launch("accumulate", accumulate, 1, 32, 0, host.data()); }).find("host pointer") !=
        std::string::npos);
  CHECK(kernel_error([&] { launch("smem", uses_dynamic_smem, 1, 64, 64 * 1024, out.p); }).find("cudaFuncSetAttribute") !=
        std::string::npos);
  REQUIRE(cudaFuncSetAttribute(uses_dynamic_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024) == cudaSuccess);
  CHECK(kernel_error([&] { launch("smem", uses_dynamic_smem, 1, 64, 64 * 1024, out.p); }).empty());
  CHECK(out.get()[0] == 63.0f);
}

TEST_CASE("emulator: new device memory is NaN, so accumulating into an unzeroed output shows") {
  Buffer out(1);
  launch("accumulate", accumulate, 4, 32, 0, out.p);
  CHECK(std::isnan(out.get()[0]));
  cudaMemset(out.p, 0, sizeof(float));
  launch("accumulate", accumulate, 4, 32, 0, out.p);
  CHECK(out.get()[0] == 128.0f);
}

TEST_CASE("emulator: the cuBLAS stand-in checks leading dimensions and batch extents") {
  cublasHandle_t h;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  Buffer a(6 * 4), b(4 * 5), c(6 * 5);
  a.set(std::vector<float>(24, 1.0f));
  b.set(std::vector<float>(20, 2.0f));
  const float one = 1, zero = 0;
  // column-major C[6x5] = A[6x4] B[4x5]
  CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 6, 5, 4, &one, a.p, 6, b.p, 4, &zero, c.p, 6) == CUBLAS_STATUS_SUCCESS);
  CHECK(c.get()[29] == 8.0f);
  // the classic row-major mix-up: lda = 4 for a 6-row column-major A
  CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 6, 5, 4, &one, a.p, 4, b.p, 4, &zero, c.p, 6) ==
        CUBLAS_STATUS_INVALID_VALUE);
  CHECK(std::string(emu::blas_error_detail()).find("lda") != std::string::npos);
  // a batch stride that runs past A's allocation
  CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, 6, 5, 4, &one, a.p, 6, 24, b.p, 4, 0, &zero, c.p, 6, 0,
                                  2) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(std::string(emu::blas_error_detail()).find("past the device allocation") != std::string::npos);
  cublasDestroy(h);
}

TEST_CASE("emulator: the thread order follows --emu-order (MTALAB_EMU_ORDER)") {
  const char* env = std::getenv("MTALAB_EMU_ORDER");
  const std::string want = env && *env ? env : "forward";
  CHECK(want == emu::order_name(emu::order()));
}
