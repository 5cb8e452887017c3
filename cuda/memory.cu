// The CUDA backend's device memory, host<->device copies, device queries and error
// reporting. Kernels live one family a file beside this one (cuda/<family>.cu, the same
// stems as autograd/cpu/), each registering itself into the kernel tables.
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>
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

// Device memory is cached per device, as PyTorch's allocator does: cudaMalloc is slow and
// cudaFree waits for the whole device, while a training step frees and reallocates the
// same sizes every time. A freed block goes on a free list of its size class and is
// handed out again; kernels run in one stream, in order, so a block is never reused
// before the work that used it is done. On an allocation failure the cache is returned
// to the driver and the allocation retried. MTALAB_CUDA_CACHE=0 turns caching off (the
// emulated build's default: exact-size blocks let AddressSanitizer see overruns);
// MTALAB_CUDA_POISON=1 fills every block handed out with all-ones bytes (NaN), which the
// emulator always does.
struct Cache {
  std::mutex mu;
  bool enabled = env_flag("MTALAB_CUDA_CACHE", !MTALAB_CUDA_EMU);
  bool poison = env_flag("MTALAB_CUDA_POISON", MTALAB_CUDA_EMU);
  std::map<std::pair<int, size_t>, std::vector<void*>> free;  // (device, size class) -> blocks
  size_t cached = 0;

  static bool env_flag(const char* name, bool dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) != "0" : dflt;
  }
  // 512-byte steps up to 1 MiB, 2 MiB steps above: bounded waste, many exact reuses.
  static size_t size_class(size_t n) {
    const size_t step = n <= (1u << 20) ? 512 : (2u << 20);
    return (std::max<size_t>(n, 1) + step - 1) / step * step;
  }
  void release_all(int dev) {  // caller holds mu
    for (auto it = free.begin(); it != free.end();) {
      if (it->first.first != dev) {
        ++it;
        continue;
      }
      for (void* p : it->second) cudaFree(p);
      cached -= it->first.second * it->second.size();
      it = free.erase(it);
    }
  }
};
Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: tensors may be freed during exit
  return *c;
}

void* device_malloc(size_t n, int dev) {
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    cache().release_all(dev);  // the cache may hold what this needs
    e = cudaMalloc(&p, n);
  }
  if (e != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_b, &total_b);
    throw DeviceOutOfMemory("cuda: cannot allocate " + std::to_string(n) + " bytes on cuda:" + std::to_string(dev) +
                            " (" + std::to_string(free_b >> 20) + " MiB free of " + std::to_string(total_b >> 20) +
                            " MiB): " + cudaGetErrorString(e));
  }
  return p;
}

void* alloc(size_t n, int dev) {
  check(cudaSetDevice(dev), "cudaSetDevice");
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  void* p = nullptr;
  if (!c.enabled) {
    p = device_malloc(n, dev);
  } else {
    const size_t k = Cache::size_class(n);
    auto it = c.free.find({dev, k});
    if (it != c.free.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      c.cached -= k;
    } else {
      p = device_malloc(k, dev);
    }
  }
  if (c.poison) check(cudaMemsetAsync(p, 0xff, n), "poison new memory");
  return p;
}
void release(void* p, size_t n, int dev) {
  cudaSetDevice(dev);
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  if (!c.enabled) {
    cudaFree(p);  // never throws from a destructor; a failure shows at the next check
    return;
  }
  const size_t k = Cache::size_class(n);
  c.free[{dev, k}].push_back(p);
  c.cached += k;
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

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
  cudaGetLastError();
  return n;
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

size_t cuda_cached_bytes() {
  cuda::Cache& c = cuda::cache();
  std::lock_guard<std::mutex> g(c.mu);
  return c.cached;
}
bool cuda_memory_info(int index, size_t* free_bytes, size_t* total_bytes) {
  if (!cuda_backend_available() || cudaSetDevice(index) != cudaSuccess ||
      cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  *free_bytes += cuda_cached_bytes();
  return true;
}
void cuda_empty_cache() {
  cuda::Cache& c = cuda::cache();
  std::lock_guard<std::mutex> g(c.mu);
  int n = 0;
  cudaGetDeviceCount(&n);
  for (int d = 0; d < n; ++d) c.release_all(d);
}
bool cuda_set_caching(bool on) {
  cuda::Cache& c = cuda::cache();
  std::lock_guard<std::mutex> g(c.mu);
  const bool was = c.enabled;
  c.enabled = on;
  return was;
}

void cuda_synchronize() { cuda::check(cudaDeviceSynchronize(), "synchronize"); }

}  // namespace mtalab
