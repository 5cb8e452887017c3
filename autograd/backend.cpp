#include "autograd/backend.h"

#include <mutex>

namespace mtalab {

Allocator& allocator(DeviceKind k) {
  static Allocator tables[kNumDeviceKinds];
  return tables[(int)k];
}

void ensure_backend(const Device& d) {
  if (d.kind == DeviceKind::cpu) return;
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] { ok = cuda_backend_available(); });
  if (!ok) throw std::runtime_error("device " + d.str() + ": " + cuda_backend_unavailable_reason());
}

}  // namespace mtalab
