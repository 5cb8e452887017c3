// CUDA fused causal attention without [T, T] maps (autograd/kernels.h states the contract;
// autograd/cpu/attention.cpp is the CPU twin and the readable reference).
//
// bfloat16 q, k, v with head dim 32, 64 or 128 run on the tensor cores: plain softmax
// attention is FlashAttention-2 in cuda/attention_flash.cuh, Multi-Token Attention the fused
// kernels of cuda/attention_mta_tc.cuh (each states its tile structure).
//
// Everything else (float32, float64; bfloat16 with another head dim, or MTA boxes too big
// for one block's shared memory, staged through float32) takes the band path below: the
// host walks the query rows in blocks; for each block every (batch, head) map's band of
// rows — the block plus the convolutions' halos, full width — is recomputed with
// strided-batched cuBLAS products and band kernels (kq-conv, head mix, softmax), exactly the
// stages of the maps path (plain softmax attention is the path with no component). The
// blocks run one after another in the stream, so dK and dV accumulate by cuBLAS with
// beta = 1 in block order, and the components' gradient sums are per-block partials added
// in a fixed order: the same bits on every run. Memory: a few bands of [B H, rows, T],
// never a [T, T] map per head.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "autograd/bf16_staging.h"
#include "cuda/attention_flash.cuh"
#include "cuda/attention_mta_tc.cuh"
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

constexpr int kWarps = 4;       // rows (warps) per 128-thread block

// ---- MTA: bands of rows ---------------------------------------------------------------------
// A band holds rows [r0, r0 + rows) of BH maps of width W: row r of map m at
// base + (m * rows + r - r0) * W. Maps are W x W (logical size W: rows >= W do not exist).
struct Band {
  int64_t maps, rows, W, r0;
  __host__ __device__ int64_t at(int64_t m, int64_t r, int64_t j) const { return (m * rows + r - r0) * W + j; }
};

// x~[r, s]: the band's map where the causal region is, 0 elsewhere (Mask_0, zero padding).
template <typename T>
__device__ __forceinline__ T masked(const T* x, const Band& b, int64_t m, int64_t r, int64_t s) {
  return r >= 0 && r < b.W && s >= 0 && s <= r ? x[b.at(m, r, s)] : T(0);
}

// Output rows [i0, i1) of kq_conv for every map: out[r, j] = sum K[a, c] x~[r-(cq-1)+a, j-p+c].
template <typename T>
__global__ void band_conv(const T* x, const T* K, T* out, Band b, int64_t H, int64_t cq, int64_t ck, int64_t p,
                          int64_t i0, int64_t i1) {
  const int64_t R = i1 - i0, n = b.maps * R * b.W;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = e % b.W, r = i0 + e / b.W % R, m = e / (b.W * R);
    const T* ker = K + (m % H) * cq * ck;
    T acc = 0;
    if (j <= r)
      for (int64_t a = 0; a < cq; ++a)
        for (int64_t c = 0; c < ck; ++c) acc += ker[a * ck + c] * masked(x, b, m, r - (cq - 1) + a, j - p + c);
    out[b.at(m, r, j)] = acc;
  }
}

// gout~[i, j]: gout where an output exists (i < W, 0 <= j <= i), 0 elsewhere.
template <typename T>
__device__ __forceinline__ T out_grad(const T* go, const Band& b, int64_t m, int64_t i, int64_t j) {
  return i < b.W && j >= 0 && j <= i ? go[b.at(m, i, j)] : T(0);
}

// Input rows [r0, r1) of the kq_conv input gradient.
template <typename T>
__global__ void band_conv_grad_x(const T* go, const T* K, T* gx, Band b, int64_t H, int64_t cq, int64_t ck, int64_t p,
                                 int64_t r0, int64_t r1) {
  const int64_t R = r1 - r0, n = b.maps * R * b.W;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t s = e % b.W, r = r0 + e / b.W % R, m = e / (b.W * R);
    const T* ker = K + (m % H) * cq * ck;
    T acc = 0;
    if (s <= r)
      for (int64_t a = 0; a < cq; ++a)
        for (int64_t c = 0; c < ck; ++c) acc += ker[a * ck + c] * out_grad(go, b, m, r + cq - 1 - a, s + p - c);
    gx[b.at(m, r, s)] = acc;
  }
}

// partial[m][tap] = sum over input rows [r0, r1) of x~[r, s] gout~[r + cq-1-a, s + p - c].
template <typename T>
__global__ void band_conv_grad_k(const T* go, const T* x, double* partial, Band b, int64_t cq, int64_t ck, int64_t p,
                                 int64_t r0, int64_t r1) {
  const int64_t taps = cq * ck;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < b.maps * taps;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = e / taps, tap = e % taps, a = tap / ck, c = tap % ck;
    double s = 0;
    for (int64_t r = r0; r < r1; ++r) {
      T row = 0;
      for (int64_t j = 0; j <= r; ++j) row += x[b.at(m, r, j)] * out_grad(go, b, m, r + cq - 1 - a, j + p - c);
      s += (double)row;
    }
    partial[e] = s;
  }
}

// Rows [q0, q1) of out_j = sum_i M[g, i, j] x_i within groups of ch maps (Transposed: M[g, j, i]).
// Groups run over (batch, group): group bg of the band mixes maps bg*ch .. bg*ch + ch - 1
// with M[bg % G] (G groups per batch entry).
template <typename T, bool Transposed>
__global__ void band_mix(const T* x, const T* M, T* out, Band b, int64_t ch, int64_t G, int64_t q0, int64_t q1) {
  const int64_t R = q1 - q0, n = b.maps / ch * R * b.W;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t k = e % b.W, q = q0 + e / b.W % R, bg = e / (b.W * R);
    const T* Mg = M + bg % G * ch * ch;
    for (int64_t j = 0; j < ch; ++j) {
      T acc = 0;
      if (k <= q)
        for (int64_t i = 0; i < ch; ++i)
          acc += (Transposed ? Mg[j * ch + i] : Mg[i * ch + j]) * x[b.at(bg * ch + i, q, k)];
      out[b.at(bg * ch + j, q, k)] = acc;
    }
  }
}

// partial[bg][i * ch + j] = sum over rows [q0, q1), k <= q, of x_i gout_j.
template <typename T>
__global__ void band_mix_grad(const T* x, const T* go, double* partial, Band b, int64_t ch, int64_t q0, int64_t q1) {
  const int64_t taps = ch * ch, groups = b.maps / ch;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < groups * taps;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bg = e / taps, i = e % taps / ch, j = e % ch;
    double s = 0;
    for (int64_t q = q0; q < q1; ++q) {
      T row = 0;
      for (int64_t k = 0; k <= q; ++k) row += x[b.at(bg * ch + i, q, k)] * go[b.at(bg * ch + j, q, k)];
      s += (double)row;
    }
    partial[e] = s;
  }
}

// Causal softmax of band rows [p0, p1) in place (a warp per row); lse of rows >= own0.
template <typename T>
__global__ void band_softmax(T* x, T* lse, Band b, int64_t T_, int64_t p0, int64_t p1, int64_t own0) {
  const int64_t task = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32, R = p1 - p0;
  if (task >= b.maps * R) return;
  const int lane = threadIdx.x % 32;
  const int64_t m = task / R, r = p0 + task % R;
  T* row = x + b.at(m, r, 0);
  T mx = -dev::inf<T>();
  for (int64_t j = lane; j <= r; j += 32) mx = dev::max(mx, row[j]);
  mx = warp_max(mx);
  T s = 0;
  for (int64_t j = lane; j <= r; j += 32) s += (row[j] = dev::exp(row[j] - mx));
  s = warp_sum(s);
  for (int64_t j = lane; j < b.W; j += 32) row[j] = j <= r ? row[j] / s : T(0);
  if (lane == 0 && r >= own0) lse[m * T_ + r] = mx + dev::log(s);
}

// P = exp(S' - lse) at j <= r, 0 above, for band rows [p0, p1).
template <typename T>
__global__ void band_exp_lse(T* x, const T* lse, Band b, int64_t T_, int64_t p0, int64_t p1) {
  const int64_t R = p1 - p0, n = b.maps * R * b.W;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = e % b.W, r = p0 + e / b.W % R, m = e / (b.W * R);
    T& y = x[b.at(m, r, j)];
    y = j <= r ? dev::exp(y - lse[m * T_ + r]) : T(0);
  }
}

// dS' = P (dP - sum_j dP P) in place of dP, band rows [r0, r1) (a warp per row).
template <typename T>
__global__ void band_softmax_grad(const T* P, T* dP, Band b, int64_t r0, int64_t r1) {
  const int64_t task = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32, R = r1 - r0;
  if (task >= b.maps * R) return;
  const int lane = threadIdx.x % 32;
  const int64_t m = task / R, r = r0 + task % R;
  const T* p = P + b.at(m, r, 0);
  T* d = dP + b.at(m, r, 0);
  T s = 0;
  for (int64_t j = lane; j <= r; j += 32) s += d[j] * p[j];
  s = warp_sum(s);
  for (int64_t j = lane; j < b.W; j += 32) d[j] = j <= r ? p[j] * (d[j] - s) : T(0);
}

// out[h][tap] = sum over b, then blocks, of partial[blk][b * H' + h][tap] (H' heads or groups).
template <typename T>
__global__ void sum_partials(const double* partial, T* out, int64_t blocks, int64_t B, int64_t Hh, int64_t taps) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < Hh * taps; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t h = e / taps, tap = e % taps;
    double s = 0;
    for (int64_t bb = 0; bb < B; ++bb)
      for (int64_t blk = 0; blk < blocks; ++blk) s += partial[(blk * B * Hh + bb * Hh + h) * taps + tap];
    out[e] = (T)s;
  }
}

// ---- host side ------------------------------------------------------------------------------
struct Shapes {
  int64_t B, H, T, D, ch;
  int dev;
  int64_t cq_pre = 0, ck_pre = 0, p_pre = 0, cq_post = 0, ck_post = 0, p_post = 0;
  bool kpre = false, mpre = false, kpost = false, mpost = false;
  int64_t hr() const { return kpre ? cq_pre - 1 : 0; }
  int64_t hp() const { return kpost ? cq_post - 1 : 0; }
};
Shapes shapes_of(const Tensor& q, const AttentionParams& a) {
  Shapes s{q.size(0), q.size(1), q.size(2), q.size(3), 1, q.device().index};
  s.kpre = a.kq_pre.defined(), s.mpre = a.mix_pre.defined(), s.kpost = a.kq_post.defined(), s.mpost = a.mix_post.defined();
  if (s.mpre) s.ch = a.mix_pre.size(1);
  else if (s.mpost) s.ch = a.mix_post.size(1);
  if (s.kpre) s.cq_pre = a.kq_pre.size(1), s.ck_pre = a.kq_pre.size(2), s.p_pre = a.p_pre;
  if (s.kpost) s.cq_post = a.kq_post.size(1), s.ck_post = a.kq_post.size(2), s.p_post = a.p_post;
  return s;
}
// Query rows per block: bands of at most ~16M elements, 16 to 256 rows.
int64_t block_rows(const Shapes& s) {
  const int64_t per_row = std::max<int64_t>(1, s.B * s.H * s.T);
  return std::clamp<int64_t>((int64_t)(16 << 20) / per_row, 16, 256);
}

template <typename T>
const T* cptr(const Tensor& t) {
  return t.defined() ? ptr<const T>(t) : nullptr;
}

unsigned rows_grid(int64_t rows) { return grid_for_rows(rows, kWarps); }

// Raw scores of every map, band rows [r0, r1): scale q kᵀ over columns [0, W).
template <typename T>
void band_scores(const Shapes& s, const T* q, const T* k, T scale, T* S, const Band& b, int64_t r0, int64_t r1) {
  gemm_rm(s.dev, false, true, r1 - r0, b.W, s.D, scale, q + r0 * s.D, s.D, s.T * s.D, k, s.D, s.T * s.D, T(0),
          S + b.at(0, r0, 0), b.W, b.rows * b.W, s.B * s.H);
}

template <typename T>
void conv(const Shapes& s, const T* x, const T* K, T* out, const Band& b, bool pre, int64_t i0, int64_t i1) {
  const int64_t cq = pre ? s.cq_pre : s.cq_post, ck = pre ? s.ck_pre : s.ck_post, p = pre ? s.p_pre : s.p_post;
  launch("attention_kq_conv", band_conv<T>, grid_for(b.maps * (i1 - i0) * b.W), kThreads, 0, x, K, out, b, s.H, cq,
         ck, p, i0, i1);
}

template <typename T>
void attention_typed(const Tensor& qt, const Tensor& kt, const Tensor& vt, const AttentionParams& a, const Tensor& ot,
                     const Tensor& lset) {
  const Shapes s = shapes_of(qt, a);
  const T *q = ptr<const T>(qt), *k = ptr<const T>(kt), *v = ptr<const T>(vt);
  T *o = ptr<T>(ot), *lse = ptr<T>(lset);
  const T scale = (T)a.scale;
  const int64_t Br = block_rows(s), hr = s.hr(), hp = s.hp(), BH = s.B * s.H;
  const int64_t max_rows = std::min(s.T, Br + hr + hp);
  Tensor buf0 = Tensor::empty({BH * max_rows * s.T}, qt.options()), buf1 = Tensor::empty(buf0.shape(), qt.options());
  for (int64_t i0 = 0; i0 < s.T; i0 += Br) {
    const int64_t i1 = std::min(s.T, i0 + Br), W = i1;
    const int64_t s0 = std::max<int64_t>(0, i0 - hp - hr), p0 = std::max<int64_t>(0, i0 - hp);
    const Band b{BH, W - s0, W, s0};
    T *cur = ptr<T>(buf0), *nxt = ptr<T>(buf1);
    band_scores(s, q, k, scale, cur, b, s0, W);
    if (s.kpre) conv(s, cur, cptr<T>(a.kq_pre), nxt, b, true, p0, W), std::swap(cur, nxt);
    if (s.mpre)
      launch("attention_head_mix", band_mix<T, false>, grid_for(BH / s.ch * (W - p0) * W), kThreads, 0, cur,
             cptr<T>(a.mix_pre), nxt, b, s.ch, s.H / s.ch, p0, W),
          std::swap(cur, nxt);
    launch("attention_softmax", band_softmax<T>, rows_grid(BH * (W - p0)), 32 * kWarps, 0, cur, lse, b, s.T, p0, W,
           i0);
    if (s.kpost) conv(s, cur, cptr<T>(a.kq_post), nxt, b, false, i0, W), std::swap(cur, nxt);
    if (s.mpost)
      launch("attention_head_mix", band_mix<T, false>, grid_for(BH / s.ch * (W - i0) * W), kThreads, 0, cur,
             cptr<T>(a.mix_post), nxt, b, s.ch, s.H / s.ch, i0, W),
          std::swap(cur, nxt);
    gemm_rm(s.dev, false, false, i1 - i0, s.D, W, T(1), cur + b.at(0, i0, 0), W, b.rows * W, v, s.D, s.T * s.D, T(0),
            o + i0 * s.D, s.D, s.T * s.D, BH);
  }
}

template <typename T>
void mta_backward(const Shapes& s, const T* q, const T* k, const T* v, const T* lse, const T* dout, T scale,
                  const AttentionParams& a, const AttentionGrads& g, const Tensor& like) {
  const int64_t Br = block_rows(s), hr = s.hr(), hp = s.hp(), BH = s.B * s.H, ch = s.ch, BG = BH / ch;
  const int64_t blocks = (s.T + Br - 1) / Br, max_rows = std::min(s.T, Br + 2 * hr + 2 * hp);
  const TensorOptions opts = like.options();
  std::vector<Tensor> bufs;
  for (int i = 0; i < 10; ++i) bufs.push_back(Tensor::empty({BH * max_rows * s.T}, opts));
  auto buf = [&](int i) { return ptr<T>(bufs[i]); };
  // dQ is written block by block; dK and dV accumulate over the blocks in order.
  Tensor dk_acc = g.dk.defined() ? g.dk : Tensor::empty(like.shape(), opts);
  Tensor dv_acc = g.dv.defined() ? g.dv : Tensor::empty(like.shape(), opts);
  Tensor dq_out = g.dq.defined() ? g.dq : Tensor::empty(like.shape(), opts);
  check(cudaMemsetAsync(dk_acc.raw(), 0, dk_acc.numel() * sizeof(T)), "attention backward: zero dK");
  check(cudaMemsetAsync(dv_acc.raw(), 0, dv_acc.numel() * sizeof(T)), "attention backward: zero dV");
  T *dq = ptr<T>(dq_out), *dk = ptr<T>(dk_acc), *dv = ptr<T>(dv_acc);
  const int64_t tpre = s.cq_pre * s.ck_pre, tpost = s.cq_post * s.ck_post;
  auto partial = [&](bool on, int64_t per) {
    return on ? Tensor::empty({blocks * per}, {DType::f64, like.device()}) : Tensor();
  };
  Tensor pk_pre = partial(s.kpre && g.dkq_pre.defined(), BH * tpre),
         pk_post = partial(s.kpost && g.dkq_post.defined(), BH * tpost),
         pm_pre = partial(s.mpre && g.dmix_pre.defined(), BG * ch * ch),
         pm_post = partial(s.mpost && g.dmix_post.defined(), BG * ch * ch);
  const T *Kpre = cptr<T>(a.kq_pre), *Kpost = cptr<T>(a.kq_post), *Mpre = cptr<T>(a.mix_pre), *Mpost = cptr<T>(a.mix_post);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t i0 = blk * Br, i1 = std::min(s.T, i0 + Br), R = i1 - i0;
    const int64_t e1 = std::min(s.T, i1 + hr), e2 = std::min(s.T, e1 + hp), W = e2;
    const int64_t s0 = std::max<int64_t>(0, i0 - hp - hr), p0 = std::max<int64_t>(0, i0 - hp);
    const Band b{BH, W - s0, W, s0};
    // Forward, recomputed: S [s0, e1) -> Ŝ, S', P [p0, e1) -> P̂, P' [i0, i1).
    T* S = buf(0);
    band_scores(s, q, k, scale, S, b, s0, e1);
    T* Sh = S;
    if (s.kpre) Sh = buf(1), conv(s, S, Kpre, Sh, b, true, p0, e1);
    T* P = Sh;  // in place over S' (see autograd/cpu/attention.cpp)
    if (s.mpre)
      P = buf(2), launch("attention_head_mix", band_mix<T, false>, grid_for(BG * (e1 - p0) * W), kThreads, 0, Sh, Mpre,
                         P, b, ch, s.H / ch, p0, e1);
    launch("attention_exp_lse", band_exp_lse<T>, grid_for(BH * (e1 - p0) * W), kThreads, 0, P, lse, b, s.T, p0, e1);
    T* Ph = P;
    if (s.kpost) Ph = buf(3), conv(s, P, Kpost, Ph, b, false, i0, i1);
    T* Pp = Ph;
    if (s.mpost)
      Pp = buf(4), launch("attention_head_mix", band_mix<T, false>, grid_for(BG * R * W), kThreads, 0, Ph, Mpost, Pp,
                          b, ch, s.H / ch, i0, i1);
    // Backward: dP' [i0, e2) -> dP̂ -> dP [i0, e1) -> dS' -> dŜ -> dS [i0, i1).
    T* dPp = buf(5);
    gemm_rm(s.dev, false, true, e2 - i0, W, s.D, T(1), dout + i0 * s.D, s.D, s.T * s.D, v, s.D, s.T * s.D, T(0),
            dPp + b.at(0, i0, 0), W, b.rows * W, BH);
    T* dPh = dPp;
    if (s.mpost) {
      dPh = buf(6);
      launch("attention_head_mix_backward", band_mix<T, true>, grid_for(BG * (e2 - i0) * W), kThreads, 0, dPp, Mpost,
             dPh, b, ch, s.H / ch, i0, e2);
      if (pm_post.defined())
        launch("attention_head_mix_backward_mix", band_mix_grad<T>, grid_for(BG * ch * ch), kThreads, 0, Ph, dPp,
               ptr<double>(pm_post) + blk * BG * ch * ch, b, ch, i0, i1);
    }
    T* dP = dPh;
    if (s.kpost) {
      dP = buf(7);
      launch("attention_kq_conv_backward_input", band_conv_grad_x<T>, grid_for(BH * (e1 - i0) * W), kThreads, 0, dPh,
             Kpost, dP, b, s.H, s.cq_post, s.ck_post, s.p_post, i0, e1);
      if (pk_post.defined())
        launch("attention_kq_conv_backward_kernel", band_conv_grad_k<T>, grid_for(BH * tpost), kThreads, 0, dPh, P,
               ptr<double>(pk_post) + blk * BH * tpost, b, s.cq_post, s.ck_post, s.p_post, i0, i1);
    }
    launch("attention_softmax_backward", band_softmax_grad<T>, rows_grid(BH * (e1 - i0)), 32 * kWarps, 0, P, dP, b,
           i0, e1);
    T* dSh = dP;
    if (s.mpre) {
      dSh = buf(8);
      launch("attention_head_mix_backward", band_mix<T, true>, grid_for(BG * (e1 - i0) * W), kThreads, 0, dP, Mpre,
             dSh, b, ch, s.H / ch, i0, e1);
      if (pm_pre.defined())
        launch("attention_head_mix_backward_mix", band_mix_grad<T>, grid_for(BG * ch * ch), kThreads, 0, Sh, dP,
               ptr<double>(pm_pre) + blk * BG * ch * ch, b, ch, i0, i1);
    }
    T* dS = dSh;
    if (s.kpre) {
      dS = buf(9);
      launch("attention_kq_conv_backward_input", band_conv_grad_x<T>, grid_for(BH * R * W), kThreads, 0, dSh, Kpre, dS,
             b, s.H, s.cq_pre, s.ck_pre, s.p_pre, i0, i1);
      if (pk_pre.defined())
        launch("attention_kq_conv_backward_kernel", band_conv_grad_k<T>, grid_for(BH * tpre), kThreads, 0, dSh, S,
               ptr<double>(pk_pre) + blk * BH * tpre, b, s.cq_pre, s.ck_pre, s.p_pre, i0, i1);
    }
    // dQ = scale dS K; dK += scale dSᵀ Q; dV += P'ᵀ dO (columns < i1, zero beyond).
    gemm_rm(s.dev, false, false, R, s.D, i1, scale, dS + b.at(0, i0, 0), W, b.rows * W, k, s.D, s.T * s.D, T(0),
            dq + i0 * s.D, s.D, s.T * s.D, BH);
    gemm_rm(s.dev, true, false, i1, s.D, R, scale, dS + b.at(0, i0, 0), W, b.rows * W, q + i0 * s.D, s.D, s.T * s.D,
            T(1), dk, s.D, s.T * s.D, BH);
    gemm_rm(s.dev, true, false, i1, s.D, R, T(1), Pp + b.at(0, i0, 0), W, b.rows * W, dout + i0 * s.D, s.D,
            s.T * s.D, T(1), dv, s.D, s.T * s.D, BH);
  }
  auto total = [&](const Tensor& p, const Tensor& out, int64_t Hh, int64_t taps) {
    if (p.defined())
      launch("attention_backward_partials", sum_partials<T>, grid_for(Hh * taps), kThreads, 0, ptr<const double>(p),
             ptr<T>(out), blocks, s.B, Hh, taps);
  };
  total(pk_pre, g.dkq_pre, s.H, tpre);
  total(pk_post, g.dkq_post, s.H, tpost);
  total(pm_pre, g.dmix_pre, BG / s.B, ch * ch);
  total(pm_post, g.dmix_post, BG / s.B, ch * ch);
}

template <typename T>
void attention_bwd_typed(const Tensor& qt, const Tensor& kt, const Tensor& vt, const Tensor& ot, const Tensor& lset,
                         const Tensor& doutt, const AttentionParams& a, const AttentionGrads& g) {
  const Shapes s = shapes_of(qt, a);
  const T *q = ptr<const T>(qt), *k = ptr<const T>(kt), *v = ptr<const T>(vt);
  mta_backward<T>(s, q, k, v, ptr<const T>(lset), ptr<const T>(doutt), (T)a.scale, a, g, qt);
}

// ---- bfloat16 plain attention on the tensor cores (cuda/attention_flash.cuh) ------------------
// cp.async moves 16-byte chunks: a view starting mid-chunk takes the staged path.
bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0; }
bool on_tensor_cores(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& a) {
  return q.dtype() == DType::bf16 && a.plain() && flash::supported_head_dim(q.size(3)) && aligned16(q) &&
         aligned16(k) && aligned16(v);
}
template <typename F>
void with_head_dim(int64_t D, F&& f) {
  switch (D) {
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    case 128: return f(std::integral_constant<int, 128>{});
    default: throw std::invalid_argument("attention on tensor cores: head dim " + std::to_string(D) + " (expected 32, 64 or 128)");
  }
}
// Every launch states its dynamic shared memory: the default limit is 48 KiB less the
// kernel's static shared memory, and the D = 128 kernels need more than that (sm_80: 163 KiB).
template <typename K>
void allow_smem(K* kernel, size_t bytes) {
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
        "attention: dynamic shared memory of a tensor-core kernel");
}
// Tiles along x, heads along y, batch along z (each of y, z up to 65535).
dim3 flash_grid(const Shapes& s, int rows) {
  return dim3((unsigned)((s.T + rows - 1) / rows), (unsigned)s.H, (unsigned)s.B);
}

void flash_tc_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& a, const Tensor& o,
                      const Tensor& lse) {
  const Shapes s = shapes_of(q, a);
  const float scale_log2 = (float)(a.scale * 1.4426950408889634);
  with_head_dim(s.D, [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    auto run = [&](auto* out) {
      using OutT = std::remove_pointer_t<decltype(out)>;
      auto* kernel = flash::fwd<D, OutT>;
      allow_smem(kernel, flash::fwd_smem<D>());
      launch("attention_flash_tc", kernel, flash_grid(s, flash::kRowsFwd), flash::kThreads, flash::fwd_smem<D>(),
             ptr<const bfloat16>(q), ptr<const bfloat16>(k), ptr<const bfloat16>(v), out, ptr<float>(lse), s.T,
             scale_log2);
    };
    if (o.dtype() == DType::f32) run(ptr<float>(o));
    else run(ptr<bfloat16>(o));
  });
}

template <typename OT>
void flash_tc_backward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                             const Tensor& dout, const AttentionParams& a, const AttentionGrads& g) {
  const Shapes s = shapes_of(q, a);
  const int64_t rows = s.B * s.H * s.T;
  Tensor Dr = Tensor::empty({rows}, {DType::f32, q.device()});
  Tensor dob = std::is_same_v<OT, bfloat16> ? dout : Tensor::empty(dout.shape(), {DType::bf16, q.device()});
  launch("attention_flash_tc_backward_dot", flash::row_dots<OT>, grid_for_rows(rows, flash::kThreads / 32),
         flash::kThreads, 0, ptr<const OT>(dout), ptr<const OT>(o), ptr<float>(Dr),
         std::is_same_v<OT, bfloat16> ? nullptr : ptr<bfloat16>(dob), rows, (int)s.D);
  const float scale = (float)a.scale, scale_log2 = (float)(a.scale * 1.4426950408889634);
  const bfloat16 *qp = ptr<const bfloat16>(q), *kp = ptr<const bfloat16>(k), *vp = ptr<const bfloat16>(v),
                 *dop = ptr<const bfloat16>(dob);
  const float *lp = ptr<const float>(lse), *dp = ptr<const float>(Dr);
  with_head_dim(s.D, [&](auto dim) {
    constexpr int D = decltype(dim)::value;
    auto kv = [&](auto* dk, auto* dv) {
      using GT = std::remove_pointer_t<decltype(dk)>;
      auto* kernel = flash::bwd_kv<D, GT>;
      allow_smem(kernel, flash::bwd_kv_smem<D>());
      launch("attention_flash_tc_backward_kv", kernel, flash_grid(s, flash::kKeysBwd), flash::kThreads,
             flash::bwd_kv_smem<D>(), qp, kp, vp, dop, lp, dp, dk, dv, s.T, scale, scale_log2);
    };
    auto qk = [&](auto* dq) {
      using GT = std::remove_pointer_t<decltype(dq)>;
      auto* kernel = flash::bwd_q<D, GT>;
      allow_smem(kernel, flash::bwd_q_smem<D>());
      launch("attention_flash_tc_backward_q", kernel, flash_grid(s, flash::kRowsFwd), flash::kThreads,
             flash::bwd_q_smem<D>(), qp, kp, vp, dop, lp, dp, dq, s.T, scale, scale_log2);
    };
    const Tensor& kvt = g.dk.defined() ? g.dk : g.dv;
    if (kvt.defined()) {
      auto out = [&](const Tensor& t, auto* like) -> decltype(like) {
        return t.defined() ? ptr<std::remove_pointer_t<decltype(like)>>(t) : nullptr;
      };
      if (kvt.dtype() == DType::f32) kv(out(g.dk, (float*)nullptr), out(g.dv, (float*)nullptr));
      else kv(out(g.dk, (bfloat16*)nullptr), out(g.dv, (bfloat16*)nullptr));
    }
    if (g.dq.defined()) {
      if (g.dq.dtype() == DType::f32) qk(ptr<float>(g.dq));
      else qk(ptr<bfloat16>(g.dq));
    }
  });
}
// dK and dV, where both are asked, share a dtype (one kernel writes both).
bool tc_grads_ok(const AttentionGrads& g) {
  return !(g.dk.defined() && g.dv.defined() && g.dk.dtype() != g.dv.dtype());
}
void flash_tc_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                       const Tensor& dout, const AttentionParams& a, const AttentionGrads& g) {
  if (dout.dtype() == DType::f32) flash_tc_backward_typed<float>(q, k, v, o, lse, dout, a, g);
  else flash_tc_backward_typed<bfloat16>(q, k, v, o, lse, dout, a, g);
}

// ---- bfloat16 MTA on the tensor cores (cuda/attention_mta_tc.cuh) ---------------------------
// A block's boxes must fit the shared memory of one block (sm_80: 163 KiB); bigger
// convolutions or groups take the staged path.
constexpr size_t kMtaSmemLimit = 160 * 1024;
mta_tc::Conv mta_conv(const Tensor& w, int64_t p) {
  if (!w.defined()) return {};
  return {(int)w.size(1), (int)w.size(2), (int)p, ptr<const float>(w)};
}
mta_tc::Params mta_params(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& a) {
  mta_tc::Params p{};
  p.q = ptr<const bfloat16>(q), p.k = ptr<const bfloat16>(k), p.v = ptr<const bfloat16>(v);
  const Shapes s = shapes_of(q, a);
  p.B = (int)s.B, p.H = (int)s.H, p.T = (int)s.T, p.D = (int)s.D, p.ch = (int)s.ch;
  p.scale = (float)a.scale;
  p.pre = mta_conv(a.kq_pre, a.p_pre), p.post = mta_conv(a.kq_post, a.p_post);
  p.mpre = a.mix_pre.defined() ? ptr<const float>(a.mix_pre) : nullptr;
  p.mpost = a.mix_post.defined() ? ptr<const float>(a.mix_post) : nullptr;
  return p;
}
bool mta_on_tensor_cores(const Tensor& q, const AttentionParams& a) {
  if (q.dtype() != DType::bf16 || a.plain() || !flash::supported_head_dim(q.size(3))) return false;
  for (const Tensor* w : {&a.kq_pre, &a.mix_pre, &a.kq_post, &a.mix_post})
    if (w->defined() && w->dtype() != DType::f32) return false;
  const mta_tc::Params p = mta_params(q, q, q, a);
  for (mta_tc::Kind kind : {mta_tc::Kind::lse, mta_tc::Kind::out, mta_tc::Kind::dr, mta_tc::Kind::dq, mta_tc::Kind::dkv})
    if (mta_tc::make_plan(kind, p).bytes() > kMtaSmemLimit) return false;
  return true;
}
void mta_launch(const char* name, void (*kernel)(mta_tc::Params), mta_tc::Kind kind, const mta_tc::Params& p) {
  const size_t bytes = mta_tc::make_plan(kind, p).bytes();
  allow_smem(kernel, bytes);
  launch(name, kernel, dim3((unsigned)p.tiles(), (unsigned)p.G(), (unsigned)p.B), mta_tc::kThreads, bytes, p);
}
void mta_tc_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& a, const Tensor& o,
                    const Tensor& lse) {
  mta_tc::Params p = mta_params(q, k, v, a);
  p.o = o.raw(), p.o_bf16 = o.dtype() == DType::bf16, p.lse = ptr<float>(lse);
  mta_launch("attention_mta_tc_lse", mta_tc::mta_lse, mta_tc::Kind::lse, p);
  mta_launch("attention_mta_tc_out", mta_tc::mta_out, mta_tc::Kind::out, p);
}
void mta_tc_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse, const Tensor& dout,
                     const AttentionParams& a, const AttentionGrads& g) {
  mta_tc::Params p = mta_params(q, k, v, a);
  auto out = [](const Tensor& t, bool& bf) -> void* {
    bf = t.defined() && t.dtype() == DType::bf16;
    return t.defined() ? t.raw() : nullptr;
  };
  p.dq = out(g.dq, p.dq_bf16), p.dk = out(g.dk, p.dk_bf16), p.dv = out(g.dv, p.dv_bf16);
  p.dout = dout.raw(), p.dout_bf16 = dout.dtype() == DType::bf16;
  p.lse = const_cast<float*>(ptr<const float>(lse));
  Tensor Dr = Tensor::empty({(int64_t)p.B * p.H * p.T}, {DType::f32, q.device()});
  p.Dr = ptr<float>(Dr);
  const bool weights = g.dkq_pre.defined() || g.dmix_pre.defined() || g.dkq_post.defined() || g.dmix_post.defined();
  const int nw = p.n_weights(), units = p.B * p.G() * p.tiles();
  Tensor partial;
  if (weights) partial = Tensor::empty({(int64_t)units * nw}, {DType::f32, q.device()}), p.partial = ptr<float>(partial);
  mta_launch("attention_mta_tc_dr", mta_tc::mta_dr, mta_tc::Kind::dr, p);
  if (p.dq || weights) mta_launch("attention_mta_tc_dq", mta_tc::mta_dq, mta_tc::Kind::dq, p);
  if (p.dk || p.dv) mta_launch("attention_mta_tc_dkv", mta_tc::mta_dkv, mta_tc::Kind::dkv, p);
  // The weight gradients in the partials' order: kq_pre, mix_pre, kq_post, mix_post.
  int w0 = 0;
  auto reduce = [&](const Tensor& gw, bool present, int n) {
    if (present && gw.defined())
      launch("attention_mta_tc_reduce", mta_tc::mta_reduce, grid_for((int64_t)p.G() * n), kThreads, 0,
             ptr<const float>(partial), p.B, p.G(), p.tiles(), nw, w0, n, ptr<float>(gw));
    if (present) w0 += n;
  };
  reduce(g.dkq_pre, p.pre.w != nullptr, p.ch * p.taps_pre());
  reduce(g.dmix_pre, p.mpre != nullptr, p.ch * p.ch);
  reduce(g.dkq_post, p.post.w != nullptr, p.ch * p.taps_post());
  reduce(g.dmix_post, p.mpost != nullptr, p.ch * p.ch);
}

// bfloat16 elsewhere (MTA, other head dims; autograd/kernels.h's contract) staged through
// float32.
void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& a, const Tensor& o,
               const Tensor& lse) {
  if (on_tensor_cores(q, k, v, a)) return flash_tc_forward(q, k, v, a, o, lse);
  if (mta_on_tensor_cores(q, a)) return mta_tc_forward(q, k, v, a, o, lse);
  if (q.dtype() == DType::bf16) {
    Bf16Staging s;
    attention(s.in(q), s.in(k), s.in(v), a, s.out(o), lse);
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(q.dtype(), "attention", [&] { attention_typed<scalar_t>(q, k, v, a, o, lse); });
}
void attention_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                   const Tensor& dout, const AttentionParams& a, const AttentionGrads& g) {
  if (on_tensor_cores(q, k, v, a) && tc_grads_ok(g) && (dout.dtype() != DType::bf16 || aligned16(dout)))
    return flash_tc_backward(q, k, v, o, lse, dout, a, g);
  if (mta_on_tensor_cores(q, a)) return mta_tc_backward(q, k, v, lse, dout, a, g);
  if (q.dtype() == DType::bf16) {
    Bf16Staging s;
    AttentionGrads w = g;
    w.dq = s.out(g.dq), w.dk = s.out(g.dk), w.dv = s.out(g.dv);
    attention_bwd(s.in(q), s.in(k), s.in(v), s.in(o), lse, s.in(dout), a, w);
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(q.dtype(), "attention_backward",
                        [&] { attention_bwd_typed<scalar_t>(q, k, v, o, lse, dout, a, g); });
}

}  // namespace

MTALAB_REGISTER_KERNEL(attention_kernel, cuda, attention);
MTALAB_REGISTER_KERNEL(attention_bwd_kernel, cuda, attention_bwd);

}  // namespace mtalab::cuda
