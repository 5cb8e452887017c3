// The CUDA backend's device memory, host<->device copies, device queries and error
// reporting. Kernels live one family a file beside this one (cuda/<family>.cu, the same
// stems as autograd/cpu/), each registering itself into the kernel tables.
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include "autograd/backend.h"
#include "cuda/common.cuh"

namespace mtalab {
namespace cuda {

void fail(const std::string& what, cudaError_t e) {
  throw std::runtime_error("cuda: " + what + ": " + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")");
}

std::string launch_shape(dim3 g, dim3 b, size_t smem) {
  auto d = [](dim3 v) {
    return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
  };
  return "<<<" + d(g) + ", " + d(b) + ", " + std::to_string(smem) + ">>>";
}

void after_launch(const char* name, dim3 grid, dim3 block, size_t smem) {
  static const bool sync = [] {
    const char* v = std::getenv("MTALAB_CUDA_SYNC");
    return v && std::string(v) == "1";
  }();
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && sync) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) fail(std::string("kernel '") + name + "' " + launch_shape(grid, block, smem), e);
}

namespace {

void* alloc(size_t n, int dev) {
  check(cudaSetDevice(dev), "cudaSetDevice");
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, n);
  if (e != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_b, &total_b);
    throw std::runtime_error("cuda: cannot allocate " + std::to_string(n) + " bytes on cuda:" + std::to_string(dev) +
                             " (" + std::to_string(free_b >> 20) + " MiB free of " + std::to_string(total_b >> 20) +
                             " MiB): " + cudaGetErrorString(e));
  }
  return p;
}
void release(void* p, size_t, int dev) {
  cudaSetDevice(dev);
  cudaFree(p);  // never throws from a destructor; a failure shows at the next check
}
void to_host(void* dst, const void* src, size_t n, int dev) {
  check(cudaSetDevice(dev), "cudaSetDevice");
  check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "copy to host");
}
void from_host(void* dst, const void* src, size_t n, int dev) {
  check(cudaSetDevice(dev), "cudaSetDevice");
  check(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "copy from host");
}

const bool registered = [] {
  allocator(DeviceKind::cuda) = {alloc, release, to_host, from_host};
  return true;
}();

}  // namespace
}  // namespace cuda

bool cuda_backend_available() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();  // a failed query must not look like a kernel's error later
  return ok;
}

std::string cuda_backend_unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  cudaGetLastError();
  if (e != cudaSuccess) return std::string("no GPU is usable: ") + cudaGetErrorString(e);
  return "this build has the CUDA backend but no GPU is visible";
}

std::string cuda_device_name(int index) {
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) {
    cudaGetLastError();
    return "unknown";
  }
  return p.name;
}

const char* cuda_backend_kind() { return MTALAB_CUDA_EMU ? "emulated" : "cuda"; }

void cuda_synchronize() { cuda::check(cudaDeviceSynchronize(), "synchronize"); }

}  // namespace mtalab
