#include "autograd/backend.h"

#include <mutex>

namespace mtalab {

void ensure_backend(const Device& d) {
  if (d.kind == DeviceKind::cpu) return;
  static std::once_flag once;
  std::call_once(once, [] { cuda_backend_init(); });
}

}  // namespace mtalab
