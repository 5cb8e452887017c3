// Built instead of cuda/*.cu when the CUDA backend is off: asking for a cuda device then
// fails with a message that says how to get one.
#include "autograd/backend.h"

namespace mtalab {
bool cuda_backend_available() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_backend_unavailable_reason() {
  return "this build of mtalab has no CUDA backend (configure with -DMTALAB_CUDA=ON on a machine with "
         "nvcc, or -DMTALAB_CUDA=EMU to run the CUDA kernels on the CPU)";
}
std::string cuda_device_name(int) { return "none"; }
const char* cuda_backend_kind() { return "none"; }
void cuda_synchronize() {}
size_t cuda_cached_bytes() { return 0; }
bool cuda_memory_info(int, size_t*, size_t*) { return false; }
void cuda_empty_cache() {}
bool cuda_set_caching(bool) { return false; }
}  // namespace mtalab
