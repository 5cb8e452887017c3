// Backends: where raw memory lives and where kernels run.
//
// Each kernel family is a KernelTable: one function pointer per device kind. The CPU
// backend (autograd/cpu/) fills the cpu slot where the table is defined; the CUDA backend
// (cuda/) fills the cuda slot from cuda_backend_init(). An op calls
//   kernel_table(x.device(), "op name")(args...)
// and gets a clear error when a device has no kernel for it yet.
#pragma once
#include <stdexcept>
#include <string>

#include "autograd/dtype.h"

namespace mtalab {

template <typename Fn>
struct KernelTable {
  const char* name;
  Fn fns[kNumDeviceKinds] = {};
  KernelTable(const char* n, Fn cpu) : name(n) { fns[0] = cpu; }
  void set(DeviceKind k, Fn f) { fns[(int)k] = f; }
  Fn operator()(const Device& d) const;
};

void ensure_backend(const Device& d);  // initialises the CUDA backend on first use

template <typename Fn>
Fn KernelTable<Fn>::operator()(const Device& d) const {
  ensure_backend(d);
  Fn f = fns[(int)d.kind];
  if (!f)
    throw std::runtime_error(std::string("kernel '") + name + "' is not implemented for device " +
                             d.str());
  return f;
}

// Memory of one device kind.
struct Allocator {
  void* (*allocate)(size_t nbytes, int device_index) = nullptr;
  void (*deallocate)(void* p, size_t nbytes, int device_index) = nullptr;
  // Byte copies; `kind` says which sides are on this device.
  void (*copy_to_host)(void* host_dst, const void* dev_src, size_t nbytes, int device_index) = nullptr;
  void (*copy_from_host)(void* dev_dst, const void* host_src, size_t nbytes, int device_index) = nullptr;
};
Allocator& allocator(DeviceKind k);

bool cuda_backend_available();
void cuda_backend_init();  // registers the cuda allocator and kernels; throws without CUDA

}  // namespace mtalab
