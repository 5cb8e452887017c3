// CPU random fills: element i of a draw is lane i%4 of Philox block counter+i/4
// (autograd/philox.h, the same code as the CUDA kernel), so any split of the work over
// threads, and either device, gives the same values. Built with -ffp-contract=off.
#include "autograd/cpu/parallel.h"
#include "autograd/kernels.h"
#include "autograd/philox.h"

namespace mtalab::cpu {
namespace {

static_assert((int)RandomKind::uniform == (int)philox::Kind::uniform && (int)RandomKind::normal == (int)philox::Kind::normal &&
              (int)RandomKind::trunc_normal == (int)philox::Kind::trunc_normal);

template <typename T>
void random_typed(RandomKind k, const Tensor& out, PhiloxState st, double a, double b) {
  T* o = static_cast<T*>(out.raw());
  const int64_t n = out.numel(), blocks = (n + 3) / 4;
  double lo = 0, hi = 0;
  if (k == RandomKind::trunc_normal) philox::trunc_bounds(b, &lo, &hi);
  parallel_for(blocks, 1024, [&](int64_t s, int64_t e) {
    for (int64_t blk = s; blk < e; ++blk) {
      double v[4];
      philox::block((philox::Kind)k, st.seed, st.counter + blk, a, b, lo, hi, v);
      for (int l = 0; l < 4 && blk * 4 + l < n; ++l) o[blk * 4 + l] = T(v[l]);  // bfloat16: rounded through float32, as on the GPU
    }
  });
}

void random_fill(RandomKind k, const Tensor& out, PhiloxState st, double a, double b) {
  MTALAB_DISPATCH_FLOATING(out.dtype(), "random", [&] { random_typed<scalar_t>(k, out, st, a, b); });
}

}  // namespace

MTALAB_REGISTER_KERNEL(random_kernel, cpu, random_fill);

}  // namespace mtalab::cpu
