// CUDA head mixing of Multi-Token Attention (Golovneva et al. 2025, §3.2): within groups
// of c_h consecutive heads, out_j = sum_i M[g, i, j] x_i at every causal entry (k <= q),
// 0 above the diagonal. Forward and input gradient: a thread per (batch, group, q, k)
// position computes all c_h outputs. Mix gradient: a block per (batch, group, 16 rows)
// sums every (i, j) over its rows into its own partial slot (thread groups split the
// positions, added in group order); a second kernel adds the slots per group in (batch,
// row block) order. No float atomics: the same bits on every run.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

constexpr int kRows = 16, kBlock = 256;

struct Mix {
  int64_t B, G, ch, T;
};

// out[b, g*ch + j, q, k] = sum_i M[g, i, j] x[b, g*ch + i, q, k]; Transposed: M[g, j, i]
// (the input gradient gx_i = sum_j M[g, i, j] gout_j).
template <typename T, bool Transposed>
__global__ void mix_maps(const T* x, const T* M, T* out, Mix m) {
  const int64_t TT = m.T * m.T, n = m.B * m.G * TT;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t pos = e % TT, bg = e / TT, grp = bg % m.G, q = pos / m.T, k = pos % m.T;
    const T* xg = x + bg * m.ch * TT + pos;  // map i of the group at x[i * TT]
    T* og = out + bg * m.ch * TT + pos;
    const T* Mg = M + grp * m.ch * m.ch;
    for (int64_t j = 0; j < m.ch; ++j) {
      acc_t<T> acc = 0;
      if (k <= q)
        for (int64_t i = 0; i < m.ch; ++i) acc += (Transposed ? Mg[j * m.ch + i] : Mg[i * m.ch + j]) * xg[i * TT];
      og[j * TT] = T(acc);
    }
  }
}

// Block u = (bg, row block): partial[u][i*ch + j] = sum over its positions (q, k <= q) of
// x_i gout_j. Thread (grp, t) sums taps t, t + per, ... over rows grp, grp + groups, ...
template <typename T>
__global__ void mix_grad(const T* x, const T* go, double* partial, Mix m, int64_t blocks, int groups) {
  MTALAB_DYNAMIC_SMEM(double, acc);  // [groups][taps]
  const int64_t TT = m.T * m.T, taps = m.ch * m.ch, u = blockIdx.x, bg = u / blocks, q0 = u % blocks * kRows;
  const int per = kBlock / groups, grp = threadIdx.x / per, t0 = threadIdx.x % per;
  const T* xg = x + bg * m.ch * TT;
  const T* gg = go + bg * m.ch * TT;
  for (int64_t tap = t0; tap < taps; tap += per) {
    const int64_t i = tap / m.ch, j = tap % m.ch;
    double s = 0;
    for (int64_t q = q0 + grp; q < dev::min(m.T, q0 + kRows); q += groups) {
      acc_t<T> row = 0;
      for (int64_t k = 0; k <= q; ++k) row += xg[i * TT + q * m.T + k] * gg[j * TT + q * m.T + k];
      s += (double)row;
    }
    acc[grp * taps + tap] = s;
  }
  __syncthreads();
  for (int64_t tap = threadIdx.x; tap < taps; tap += kBlock) {
    double s = 0;
    for (int g = 0; g < groups; ++g) s += acc[g * taps + tap];
    partial[u * taps + tap] = s;
  }
}

// One thread per (unit, tap) without shared memory: groups too large to stage.
template <typename T>
__global__ void mix_grad_direct(const T* x, const T* go, double* partial, Mix m, int64_t blocks) {
  const int64_t TT = m.T * m.T, taps = m.ch * m.ch, units = m.B * m.G * blocks;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < units * taps;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t u = e / taps, tap = e % taps, i = tap / m.ch, j = tap % m.ch, bg = u / blocks,
                  q0 = u % blocks * kRows;
    const T* xi = x + (bg * m.ch + i) * TT;
    const T* gj = go + (bg * m.ch + j) * TT;
    double s = 0;
    for (int64_t q = q0; q < dev::min(m.T, q0 + kRows); ++q) {
      acc_t<T> row = 0;
      for (int64_t k = 0; k <= q; ++k) row += xi[q * m.T + k] * gj[q * m.T + k];
      s += (double)row;
    }
    partial[e] = s;
  }
}

template <typename T>
__global__ void mix_grad_total(const double* partial, T* gm, Mix m, int64_t blocks) {
  const int64_t taps = m.ch * m.ch;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m.G * taps; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t grp = e / taps, tap = e % taps;
    double s = 0;
    for (int64_t b = 0; b < m.B; ++b)
      for (int64_t blk = 0; blk < blocks; ++blk) s += partial[((b * m.G + grp) * blocks + blk) * taps + tap];
    gm[e] = (T)s;
  }
}

Mix mix_of(const Tensor& x, const Tensor& mix) {
  const int64_t ch = mix.size(1);
  return {x.size(0), x.size(1) / ch, ch, x.size(2)};
}

void head_mix(const Tensor& x, const Tensor& mix, const Tensor& out) {
  MTALAB_DISPATCH_FLOATING(x.dtype(), "head_mix", [&] {
    using T = scalar_t;
    const Mix m = mix_of(x, mix);
    launch("head_mix", mix_maps<T, false>, grid_for(m.B * m.G * m.T * m.T), kThreads, 0, ptr<const T>(x),
           ptr<const T>(mix), ptr<T>(out), m);
  });
}

void head_mix_bwd(const Tensor& x, const Tensor& mix, const Tensor& gout, const Tensor& gx, const Tensor& gmix) {
  MTALAB_DISPATCH_FLOATING(x.dtype(), "head_mix_backward", [&] {
    using T = scalar_t;
    const Mix m = mix_of(x, mix);
    if (gx.defined())
      launch("head_mix_backward_input", mix_maps<T, true>, grid_for(m.B * m.G * m.T * m.T), kThreads, 0,
             ptr<const T>(gout), ptr<const T>(mix), ptr<T>(gx), m);
    if (!gmix.defined()) return;
    const int64_t blocks = (m.T + kRows - 1) / kRows, units = m.B * m.G * blocks, taps = m.ch * m.ch;
    Tensor partial = Tensor::empty({units, taps}, {DType::f64, x.device()});
    int groups = (int)std::clamp<int64_t>(kBlock / taps, 1, kRows);
    while (groups > 1 && kBlock % groups) --groups;
    const size_t smem = (size_t)groups * taps * sizeof(double);
    if (smem <= 48 * 1024)
      launch("head_mix_backward_mix", mix_grad<T>, (unsigned)units, kBlock, smem, ptr<const T>(x), ptr<const T>(gout),
             ptr<double>(partial), m, blocks, groups);
    else
      launch("head_mix_backward_mix_direct", mix_grad_direct<T>, grid_for(units * taps), kThreads, 0, ptr<const T>(x),
             ptr<const T>(gout), ptr<double>(partial), m, blocks);
    launch("head_mix_backward_mix_total", mix_grad_total<T>, grid_for(m.G * taps), kThreads, 0,
           ptr<const double>(partial), ptr<T>(gmix), m, blocks);
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(head_mix_kernel, cuda, head_mix);
MTALAB_REGISTER_KERNEL(head_mix_bwd_kernel, cuda, head_mix_bwd);

}  // namespace mtalab::cuda
