// Backends: where raw memory lives and where kernels run.
//
// Each kernel family is a KernelTable (declared in autograd/kernels.h, defined once in
// autograd/kernels.cpp): one function pointer per device kind. Every backend file fills
// its own slot with MTALAB_REGISTER_KERNEL; the tables are constant-initialised (a
// constexpr constructor), so they exist before any registration runs and the order in
// which translation units initialise cannot matter. An op calls
//   kernel_table(x.device())(args...)
// and gets a clear error when a device has no kernel for it.
#pragma once
#include <cstddef>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "autograd/dtype.h"

namespace mtalab {

template <typename Fn>
struct KernelTable {
  const char* name;
  Fn fns[kNumDeviceKinds];
  constexpr explicit KernelTable(const char* n) : name(n), fns{} {}
  void set(DeviceKind k, Fn f) { fns[(int)k] = f; }
  bool has(DeviceKind k) const { return fns[(int)k] != nullptr; }
  Fn operator()(const Device& d) const;
};

void ensure_backend(const Device& d);  // checks once that the device's backend can run

template <typename Fn>
Fn KernelTable<Fn>::operator()(const Device& d) const {
  ensure_backend(d);
  Fn f = fns[(int)d.kind];
  if (!f)
    throw std::runtime_error(std::string("kernel '") + name + "' is not implemented for device " +
                             d.str());
  return f;
}

// Memory of one device kind, registered by its backend (autograd/cpu/memory.cpp,
// cuda/memory.cu) like a kernel.
struct Allocator {
  void* (*allocate)(size_t nbytes, int device_index) = nullptr;
  void (*deallocate)(void* p, size_t nbytes, int device_index) = nullptr;
  void (*copy_to_host)(void* host_dst, const void* dev_src, size_t nbytes, int device_index) = nullptr;
  void (*copy_from_host)(void* dev_dst, const void* host_src, size_t nbytes, int device_index) = nullptr;
};
Allocator& allocator(DeviceKind k);

// A device allocation failed: a std::bad_alloc (callers treat it as running out of memory)
// whose message names the device, the size and what was free.
struct DeviceOutOfMemory : std::bad_alloc {
  std::string message;
  explicit DeviceOutOfMemory(std::string m) : message(std::move(m)) {}
  const char* what() const noexcept override { return message.c_str(); }
};

// The CUDA backend (cuda/memory.cu, or cuda/no_cuda.cpp in builds without it).
bool cuda_backend_available();           // a device can run kernels (a GPU, or the emulator)
std::string cuda_backend_unavailable_reason();  // why not, for error messages
int cuda_device_count();                 // devices kernels can run on (0 without a backend or GPU)
std::string cuda_device_name(int index);  // "NVIDIA H200", "emulated (CPU fibers)", ...
const char* cuda_backend_kind();          // "cuda", "emulated" or "none"
void cuda_synchronize();                  // waits for queued work; throws the first error
// The CUDA allocator's cache of freed blocks (cuda/memory.cu): its size, returning it to
// the driver, and turning caching on or off (returns the previous setting; blocks freed
// while it was on stay cached until cuda_empty_cache).
size_t cuda_cached_bytes();
// Free and total memory of device `index` as the driver reports it (plus what the cache
// holds, which is free to reuse); false without a usable device.
bool cuda_memory_info(int index, size_t* free_bytes, size_t* total_bytes);
void cuda_empty_cache();
bool cuda_set_caching(bool on);

}  // namespace mtalab

// Fills TABLE's slot for device KIND (cpu or cuda) with FN at load time.
#define MTALAB_REGISTER_KERNEL_CAT2(a, b) a##b
#define MTALAB_REGISTER_KERNEL_CAT(a, b) MTALAB_REGISTER_KERNEL_CAT2(a, b)
#define MTALAB_REGISTER_KERNEL(TABLE, KIND, FN)                                              \
  static const bool MTALAB_REGISTER_KERNEL_CAT(mtalab_registered_, __LINE__) =               \
      (::mtalab::TABLE.set(::mtalab::DeviceKind::KIND, FN), true)
