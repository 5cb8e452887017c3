// CUDA softmax and log-softmax over the last dim, forward and backward, plain or causal
// (row i of each [T, T] map sees columns j <= i; no mask is built): one warp per row,
// lanes striding the row, butterfly reductions in a fixed order.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

constexpr int kWarps = 8;  // rows per 256-thread block

template <typename T, bool Log, bool Causal>
__global__ void softmax_rows(const T* x, T* y, int64_t rows, int64_t full, int64_t tq) {
  using A = acc_t<T>;  // bfloat16 rows are computed in float32 and rounded once
  const int64_t r = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32;
  if (r >= rows) return;  // the whole warp leaves together
  const int lane = threadIdx.x % 32;
  const T* xr = x + r * full;
  T* yr = y + r * full;
  const int64_t n = Causal ? dev::min(full, r % tq + 1) : full;
  for (int64_t j = n + lane; j < full; j += 32) yr[j] = T(Log ? -dev::inf<A>() : A(0));
  A m = -dev::inf<A>();
  for (int64_t j = lane; j < n; j += 32) m = (A)xr[j] > m ? (A)xr[j] : m;  // NaN never wins, as on the CPU
  for (int o = 16; o > 0; o >>= 1) {
    const A other = __shfl_xor_sync(0xffffffffu, m, o);
    m = other > m ? other : m;
  }
  if (m == -dev::inf<A>()) m = 0;  // a row with no finite entry stays 0 / -inf
  A s = 0;
  for (int64_t j = lane; j < n; j += 32) s += dev::exp((A)xr[j] - m);
  s = warp_sum(s);
  if (Log) {
    const A ls = dev::log(s) + m;
    for (int64_t j = lane; j < n; j += 32) yr[j] = T((A)xr[j] - ls);
  } else {
    const A inv = s > 0 ? A(1) / s : A(0);
    for (int64_t j = lane; j < n; j += 32) yr[j] = T(dev::exp((A)xr[j] - m) * inv);  // the same exp: the same bits
  }
}

// softmax: gx = y (gy - sum(gy y)); log_softmax: gx = gy - exp(y) sum(gy).
template <typename T, bool Log, bool Causal>
__global__ void softmax_bwd_rows(const T* y, const T* gy, T* gx, int64_t rows, int64_t full, int64_t tq) {
  using A = acc_t<T>;
  const int64_t r = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32;
  if (r >= rows) return;
  const int lane = threadIdx.x % 32;
  const T *yr = y + r * full, *gr = gy + r * full;
  T* out = gx + r * full;
  const int64_t n = Causal ? dev::min(full, r % tq + 1) : full;
  for (int64_t j = n + lane; j < full; j += 32) out[j] = T(A(0));  // masked entries get no gradient
  A s = 0;
  for (int64_t j = lane; j < n; j += 32) s += Log ? (A)gr[j] : (A)gr[j] * (A)yr[j];
  s = warp_sum(s);
  for (int64_t j = lane; j < n; j += 32)
    out[j] = T(Log ? (A)gr[j] - dev::exp((A)yr[j]) * s : (A)yr[j] * ((A)gr[j] - s));
}

template <typename T, bool Log, bool Causal>
void softmax_run(const Tensor& x, const Tensor& y) {
  const int64_t full = x.size(-1), rows = full ? x.numel() / full : 0, tq = x.dim() > 1 ? x.size(-2) : 1;
  launch("softmax", softmax_rows<T, Log, Causal>, grid_for_rows(rows, kWarps), 32 * kWarps, 0, ptr<const T>(x),
         ptr<T>(y), rows, full, tq);
}
template <typename T, bool Log, bool Causal>
void softmax_bwd_run(const Tensor& y, const Tensor& gy, const Tensor& gx) {
  const int64_t full = y.size(-1), rows = full ? y.numel() / full : 0, tq = y.dim() > 1 ? y.size(-2) : 1;
  launch("softmax_backward", softmax_bwd_rows<T, Log, Causal>, grid_for_rows(rows, kWarps), 32 * kWarps, 0,
         ptr<const T>(y), ptr<const T>(gy), ptr<T>(gx), rows, full, tq);
}

void softmax(const Tensor& x, const Tensor& y, bool log, bool causal) {
  MTALAB_DISPATCH_FLOATING(x.dtype(), "softmax", [&] {
    using T = scalar_t;
    if (log) causal ? softmax_run<T, true, true>(x, y) : softmax_run<T, true, false>(x, y);
    else causal ? softmax_run<T, false, true>(x, y) : softmax_run<T, false, false>(x, y);
  });
}
void softmax_bwd(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log, bool causal) {
  MTALAB_DISPATCH_FLOATING(y.dtype(), "softmax_backward", [&] {
    using T = scalar_t;
    if (log) causal ? softmax_bwd_run<T, true, true>(y, gy, gx) : softmax_bwd_run<T, true, false>(y, gy, gx);
    else causal ? softmax_bwd_run<T, false, true>(y, gy, gx) : softmax_bwd_run<T, false, false>(y, gy, gx);
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(softmax_kernel, cuda, softmax);
MTALAB_REGISTER_KERNEL(softmax_bwd_kernel, cuda, softmax_bwd);

}  // namespace mtalab::cuda
