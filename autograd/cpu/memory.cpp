// CPU memory (64-byte aligned heap blocks) and the thread count.
#include <cblas.h>
#include <omp.h>

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "autograd/kernels.h"

namespace mtalab {

namespace {
void* cpu_alloc(size_t n, int) {
  // Keep freed activation buffers in the heap instead of returning them to the kernel
  // with munmap: every training step reallocates the same sizes, and fresh pages cost a
  // page fault and a zeroing each.
  static const bool tuned = [] {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)tuned;
  // 64-byte alignment for vector loads; size rounded up as aligned_alloc requires.
  void* p = std::aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  return p;
}
void cpu_free(void* p, size_t, int) { std::free(p); }
void cpu_copy(void* dst, const void* src, size_t n, int) { std::memcpy(dst, src, n); }

const bool registered = [] {
  allocator(DeviceKind::cpu) = {cpu_alloc, cpu_free, cpu_copy, cpu_copy};
  return true;
}();
}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: need at least 1 thread, got " + std::to_string(n));
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}
int get_num_threads() { return omp_get_max_threads(); }

}  // namespace mtalab
