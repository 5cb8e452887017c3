// CPU fill of a contiguous tensor with one value.
#include "autograd/cpu/parallel.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {

template <typename T>
static void fill_typed(const Tensor& dst, double v) {
  T* d = static_cast<T*>(dst.raw());
  const T tv = (T)v;
  parallel_for(dst.numel(), 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) d[i] = tv;
  });
}
static void fill(const Tensor& dst, double v) {
  MTALAB_DISPATCH_ALL(dst.dtype(), [&] { fill_typed<type_t>(dst, v); });
}

MTALAB_REGISTER_KERNEL(fill_kernel, cpu, fill);

}  // namespace mtalab::cpu
