// CUDA RMSNorm and LayerNorm over the last dim: one warp per row for the forward and the
// input gradient (row sums in double, as on the CPU); the weight and bias gradients are
// column sums, taken per block of rows and then over the blocks in order.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

constexpr int kWarps = 8;

// T is the storage type, A = acc_t<T> the arithmetic one (float for bfloat16); the row
// statistics mean and rstd are stored in A.
template <typename T, typename A = acc_t<T>>
__global__ void norm_rows(bool layer, const T* x, const T* w, const T* bias, double eps, T* y, A* mean, A* rstd,
                          int64_t rows, int64_t n) {
  const int64_t r = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32;
  if (r >= rows) return;
  const int lane = threadIdx.x % 32;
  const T* xr = x + r * n;
  T* yr = y + r * n;
  double mu = 0;
  if (layer) {
    for (int64_t j = lane; j < n; j += 32) mu += (double)xr[j];
    mu = warp_sum(mu) / (double)n;
  }
  double ss = 0;
  for (int64_t j = lane; j < n; j += 32) {
    const double d = (double)xr[j] - mu;
    ss += d * d;
  }
  ss = warp_sum(ss);
  const A rs = (A)(1.0 / ::sqrt(ss / (double)n + eps)), m = (A)mu;
  if (lane == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
  for (int64_t j = lane; j < n; j += 32) {
    A v = ((A)xr[j] - m) * rs;
    if (w) v *= (A)w[j];
    if (bias) v += (A)bias[j];
    yr[j] = T(v);
  }
}

// With xh = (x - mean) rstd, h = w gy:  rms: gx = rstd (h - xh mean(h xh));
// layer: gx = rstd (h - mean(h) - xh mean(h xh)).
template <typename T, typename A = acc_t<T>>
__global__ void norm_bwd_rows(bool layer, const T* x, const T* w, const A* mean, const A* rstd, const T* gy, T* gx,
                              int64_t rows, int64_t n) {
  const int64_t r = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32;
  if (r >= rows) return;
  const int lane = threadIdx.x % 32;
  const T *xr = x + r * n, *gr = gy + r * n;
  const A m = mean[r], rs = rstd[r];
  double sh = 0, shx = 0;
  for (int64_t j = lane; j < n; j += 32) {
    const double h = (double)(w ? (A)gr[j] * (A)w[j] : (A)gr[j]);
    sh += h;
    shx += h * (double)(((A)xr[j] - m) * rs);
  }
  sh = warp_sum(sh);
  shx = warp_sum(shx);
  const A mh = layer ? (A)(sh / (double)n) : A(0), mhx = (A)(shx / (double)n);
  T* out = gx + r * n;
  for (int64_t j = lane; j < n; j += 32)
    out[j] = T(rs * ((w ? (A)gr[j] * (A)w[j] : (A)gr[j]) - mh - ((A)xr[j] - m) * rs * mhx));
}

// pw[k][j] = sum over rows of block k of gy * xh, pb[k][j] = sum of gy (a thread per column).
template <typename T, typename A = acc_t<T>>
__global__ void norm_cols(const T* x, const A* mean, const A* rstd, const T* gy, double* pw, double* pb,
                          int64_t rows, int64_t n, int64_t bs) {
  const int64_t k = blockIdx.y;
  for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < n; j += (int64_t)gridDim.x * blockDim.x) {
    double aw = 0, ab = 0;
    for (int64_t r = k * bs, re = dev::min(rows, r + bs); r < re; ++r) {
      const A g = (A)gy[r * n + j];
      aw += (double)g * (double)(((A)x[r * n + j] - mean[r]) * rstd[r]);
      ab += (double)g;
    }
    pw[k * n + j] = aw;
    pb[k * n + j] = ab;
  }
}

template <typename T>
__global__ void norm_cols_total(const double* pw, const double* pb, T* gw, T* gb, int64_t nb, int64_t n) {
  for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < n; j += (int64_t)gridDim.x * blockDim.x) {
    double aw = 0, ab = 0;
    for (int64_t k = 0; k < nb; ++k) aw += pw[k * n + j], ab += pb[k * n + j];
    if (gw) gw[j] = T(aw);
    if (gb) gb[j] = T(ab);
  }
}

template <typename T>
const T* opt_ptr(const Tensor& t) {
  return t.defined() ? ptr<const T>(t) : nullptr;
}

void norm(bool layer, const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
          const Tensor& mean, const Tensor& rstd) {
  MTALAB_DISPATCH_FLOATING(x.dtype(), "norm", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
    launch("norm", norm_rows<T>, grid_for_rows(rows, kWarps), 32 * kWarps, 0, layer, ptr<const T>(x), opt_ptr<T>(w),
           opt_ptr<T>(b), eps, ptr<T>(y), ptr<A>(mean), ptr<A>(rstd), rows, n);
  });
}

void norm_bwd(bool layer, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
              const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  MTALAB_DISPATCH_FLOATING(x.dtype(), "norm_backward", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
    if (gx.defined())
      launch("norm_backward", norm_bwd_rows<T>, grid_for_rows(rows, kWarps), 32 * kWarps, 0, layer, ptr<const T>(x),
             opt_ptr<T>(w), ptr<const A>(mean), ptr<const A>(rstd), ptr<const T>(gy), ptr<T>(gx), rows, n);
    if (!gw.defined() && !gb.defined()) return;
    // The CPU's partition: at most 64 blocks of rows, their size fixed by the shape.
    const int64_t bs = std::max<int64_t>(64, (rows + 63) / 64), nb = std::max<int64_t>(1, (rows + bs - 1) / bs);
    Tensor pw = Tensor::empty({nb, n}, {DType::f64, x.device()}), pb = Tensor::empty({nb, n}, {DType::f64, x.device()});
    launch("norm_backward_cols", norm_cols<T>, dim3(grid_for(n), (unsigned)nb), kThreads, 0, ptr<const T>(x),
           ptr<const A>(mean), ptr<const A>(rstd), ptr<const T>(gy), ptr<double>(pw), ptr<double>(pb), rows, n, bs);
    launch("norm_backward_cols", norm_cols_total<T>, grid_for(n), kThreads, 0, ptr<const double>(pw),
           ptr<const double>(pb), gw.defined() ? ptr<T>(gw) : nullptr, gb.defined() ? ptr<T>(gb) : nullptr, nb, n);
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(norm_kernel, cuda, norm);
MTALAB_REGISTER_KERNEL(norm_bwd_kernel, cuda, norm_bwd);

}  // namespace mtalab::cuda
