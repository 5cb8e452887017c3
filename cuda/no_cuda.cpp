// Built instead of cuda/*.cu when the CUDA backend is off: asking for a cuda
// device then fails with a message that says how to get one.
#include "autograd/backend.h"
namespace mtalab {
bool cuda_backend_available() { return false; }
void cuda_backend_init() {
  throw std::runtime_error("device cuda: this build of mtalab has no CUDA backend "
                           "(configure with -DMTALAB_CUDA=ON on a machine with nvcc)");
}
}  // namespace mtalab
