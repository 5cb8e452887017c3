// CUDA random fills from the same Philox code as the CPU (autograd/philox.h): one thread
// per block of four values, so a seeded draw is bitwise the same on either device. Built
// with -fmad=false (see philox.h).
#include "autograd/philox.h"
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

template <typename T>
__global__ void random_kernel_t(T* o, int64_t n, philox::Kind k, uint64_t seed, uint64_t counter, double a, double b,
                                double lo, double hi) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t blk = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; blk < blocks;
       blk += (int64_t)gridDim.x * blockDim.x) {
    double v[4];
    philox::block(k, seed, counter + blk, a, b, lo, hi, v);
    for (int l = 0; l < 4 && blk * 4 + l < n; ++l) o[blk * 4 + l] = T(v[l]);  // bfloat16: rounded through float32, as on the CPU
  }
}

template <typename T>
void random_typed(RandomKind k, const Tensor& out, PhiloxState st, double a, double b) {
  const int64_t n = out.numel();
  double lo = 0, hi = 0;
  if (k == RandomKind::trunc_normal) philox::trunc_bounds(b, &lo, &hi);
  launch("random", random_kernel_t<T>, grid_for((n + 3) / 4), kThreads, 0, ptr<T>(out), n, (philox::Kind)k, st.seed,
         st.counter, a, b, lo, hi);
}

void random_fill(RandomKind k, const Tensor& out, PhiloxState st, double a, double b) {
  MTALAB_DISPATCH_FLOATING(out.dtype(), "random", [&] { random_typed<scalar_t>(k, out, st, a, b); });
}

}  // namespace

MTALAB_REGISTER_KERNEL(random_kernel, cuda, random_fill);

}  // namespace mtalab::cuda
