// CPU fused causal attention without [T, T] maps (autograd/kernels.h states the contract).
//
// Plain softmax attention is FlashAttention-2 (Dao 2023): a unit owns a tile of queries,
// walks the key tiles up to the diagonal with an online softmax, and saves only each
// row's log-sum-exp. The backward recomputes the tiles' scores: key tiles own dK and dV
// (looping over the query tiles below them), query tiles own dQ; each output has one
// writer, so no reduction is needed.
//
// Multi-Token Attention (Golovneva et al. 2025, §3) mixes neighbouring scores before and
// after the softmax, so a tile needs its neighbours: a unit owns a block of query rows
// of one head group and recomputes, over full rows, what the block depends on — c_q - 1
// rows above for each convolution in the forward (the softmax of a halo row is the same
// computation its own block makes, so the same bits), and rows below in the backward
// (whose gradients flow up through the transposed convolutions). Full rows make every
// softmax exact in one pass; the per-unit scratch is a few bands of rows x T, never a map.
// dK and dV sum over all query rows: each head group's rows are cut into a fixed number
// of chunks (by shape, balanced by causal work), each chunk sums its blocks in order
// into its own buffer, and the buffers are added in chunk order — deterministic for any
// thread count, with memory bounded by processing head groups in waves.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/bf16_staging.h"
#include "autograd/cpu/mta_rows.h"
#include "autograd/cpu/parallel.h"
#include "autograd/cpu/simd.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {

// ---- row operations, vectorised for float32 (exp dominates the softmax's cost) ---------
namespace simd {
// x[j] = exp(x[j] - shift) for j < n; *sum = their sum (lane-wise, then across lanes).
template <int L>
MTALAB_VINLINE void exp_shift_impl(float* x, int64_t n, float shift, float* sum) {
  using F = typename Lanes<L>::F;
  F acc = {};
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const F e = exp<F, true>(load<F>(x + j) - shift);
    store(x + j, e);
    acc += e;
  }
  if (j < n) {
    const F e = exp<F, true>(load_part<F>(x + j, n - j, -__builtin_inff()) - shift);
    store_part(x + j, e, n - j);
    acc += e;
  }
  *sum = hsum(acc);
}
// sum_j d[j] p[j], then d[j] = p[j] (d[j] - that sum), for j < n (the softmax backward).
template <int L>
MTALAB_VINLINE void softmax_grad_impl(const float* p, float* d, int64_t n) {
  using F = typename Lanes<L>::F;
  F acc = {};
  int64_t j = 0;
  for (; j + L <= n; j += L) acc += load<F>(d + j) * load<F>(p + j);
  float dot = hsum(acc);
  for (; j < n; ++j) dot += d[j] * p[j];
  for (j = 0; j + L <= n; j += L) store(d + j, load<F>(p + j) * (load<F>(d + j) - dot));
  for (; j < n; ++j) d[j] = p[j] * (d[j] - dot);
}
MTALAB_SIMD_ENTRY(exp_shift, (float* x, int64_t n, float shift, float* sum), (x, n, shift, sum))
MTALAB_SIMD_ENTRY(softmax_grad, (const float* p, float* d, int64_t n), (p, d, n))
}  // namespace simd

// x[j] = exp(x[j] - shift), j < n; returns the sum.
inline float exp_shift(float* x, int64_t n, float shift) {
  float s = 0;
  simd::exp_shift(x, n, shift, &s);
  return s;
}
inline double exp_shift(double* x, int64_t n, double shift) {
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += (x[j] = std::exp(x[j] - shift));
  return s;
}
inline void softmax_grad(const float* p, float* d, int64_t n) { simd::softmax_grad(p, d, n); }
inline void softmax_grad(const double* p, double* d, int64_t n) {
  double dot = 0;
  for (int64_t j = 0; j < n; ++j) dot += d[j] * p[j];
  for (int64_t j = 0; j < n; ++j) d[j] = p[j] * (d[j] - dot);
}

constexpr int64_t kFlashRows = 64, kFlashCols = 64;  // FlashAttention tiles
constexpr int64_t kMtaRows = 32;                     // MTA query rows per unit
constexpr int64_t kChunks = 4;                       // dK/dV partial sums per head group

// C[M, N] = alpha op(A) op(B) + beta C, row-major; A is [K, M] when ta, B is [N, K] when tb.
template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  const auto TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    cblas_dgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <typename T>
constexpr T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// ---- plain softmax attention: FlashAttention-2 ------------------------------------------
// One head's rows: q, k, v, o point at [T, D]; lse at [T].
template <typename T>
struct Head {
  const T *q, *k, *v;
  int64_t T_, D;
};

template <typename T>
void flash_forward_tile(const Head<T>& h, T scale, int64_t i0, int64_t i1, T* o, T* lse) {
  const int64_t R = i1 - i0, D = h.D;
  std::vector<T> s(R * kFlashCols), acc(R * D, T(0)), m(R, neg_inf<T>()), l(R, T(0));
  for (int64_t j0 = 0; j0 < i1; j0 += kFlashCols) {
    const int64_t C = std::min(i1, j0 + kFlashCols) - j0;
    gemm<T>(false, true, R, C, D, scale, h.q + i0 * D, D, h.k + j0 * D, D, T(0), s.data(), kFlashCols);
    for (int64_t r = 0; r < R; ++r) {
      T* row = s.data() + r * kFlashCols;
      const int64_t n = std::min(C, i0 + r - j0 + 1);  // causal: columns j <= i
      if (n <= 0) {
        std::fill(row, row + C, T(0));
        continue;
      }
      T mt = m[r];
      for (int64_t c = 0; c < n; ++c) mt = std::max(mt, row[c]);
      const T corr = m[r] == neg_inf<T>() ? T(0) : std::exp(m[r] - mt);
      const T sum = exp_shift(row, n, mt);
      std::fill(row + n, row + C, T(0));
      l[r] = l[r] * corr + sum;
      m[r] = mt;
      T* a = acc.data() + r * D;
      for (int64_t d = 0; d < D; ++d) a[d] *= corr;
    }
    gemm<T>(false, false, R, D, C, T(1), s.data(), kFlashCols, h.v + j0 * D, D, T(1), acc.data(), D);
  }
  for (int64_t r = 0; r < R; ++r) {
    const T inv = T(1) / l[r];
    for (int64_t d = 0; d < D; ++d) o[(i0 + r) * D + d] = acc[r * D + d] * inv;
    lse[i0 + r] = m[r] + std::log(l[r]);
  }
}

// P and dS of the tile (queries [i0, i0+R), keys [j0, j0+C)) from the saved row statistics:
// P = exp(scale q kᵀ - lse) at j <= i (else 0), dS = P (dO vᵀ - Dr).
template <typename T>
void flash_tile_grads(const Head<T>& h, T scale, const T* dout, const T* lse, const T* Dr, int64_t i0, int64_t R,
                      int64_t j0, int64_t C, T* p, T* ds) {
  const int64_t D = h.D;
  gemm<T>(false, true, R, C, D, scale, h.q + i0 * D, D, h.k + j0 * D, D, T(0), p, kFlashCols);
  gemm<T>(false, true, R, C, D, T(1), dout + i0 * D, D, h.v + j0 * D, D, T(0), ds, kFlashCols);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t i = i0 + r, n = std::clamp<int64_t>(i - j0 + 1, 0, C);
    T* pr = p + r * kFlashCols;
    T* dr = ds + r * kFlashCols;
    exp_shift(pr, n, lse[i]);
    for (int64_t c = 0; c < n; ++c) dr[c] = pr[c] * (dr[c] - Dr[i]);
    std::fill(pr + n, pr + C, T(0));
    std::fill(dr + n, dr + C, T(0));
  }
}

// dK and dV of key tile [j0, j1): the query tiles from the diagonal down.
template <typename T>
void flash_backward_keys(const Head<T>& h, T scale, const T* dout, const T* lse, const T* Dr, int64_t j0, int64_t j1,
                         T* dk, T* dv) {
  const int64_t C = j1 - j0, D = h.D;
  std::vector<T> p(kFlashRows * kFlashCols), ds(kFlashRows * kFlashCols), gk(C * D, T(0)), gv(C * D, T(0));
  for (int64_t i0 = j0 / kFlashRows * kFlashRows; i0 < h.T_; i0 += kFlashRows) {
    const int64_t R = std::min(h.T_, i0 + kFlashRows) - i0;
    flash_tile_grads(h, scale, dout, lse, Dr, i0, R, j0, C, p.data(), ds.data());
    gemm<T>(true, false, C, D, R, T(1), p.data(), kFlashCols, dout + i0 * D, D, T(1), gv.data(), D);
    gemm<T>(true, false, C, D, R, scale, ds.data(), kFlashCols, h.q + i0 * D, D, T(1), gk.data(), D);
  }
  std::copy(gk.begin(), gk.end(), dk + j0 * D);
  std::copy(gv.begin(), gv.end(), dv + j0 * D);
}

// dQ of query tile [i0, i1): the key tiles up to the diagonal.
template <typename T>
void flash_backward_queries(const Head<T>& h, T scale, const T* dout, const T* lse, const T* Dr, int64_t i0,
                            int64_t i1, T* dq) {
  const int64_t R = i1 - i0, D = h.D;
  std::vector<T> p(kFlashRows * kFlashCols), ds(kFlashRows * kFlashCols), gq(R * D, T(0));
  for (int64_t j0 = 0; j0 < i1; j0 += kFlashCols) {
    const int64_t C = std::min(i1, j0 + kFlashCols) - j0;
    flash_tile_grads(h, scale, dout, lse, Dr, i0, R, j0, C, p.data(), ds.data());
    gemm<T>(false, false, R, D, C, scale, ds.data(), kFlashCols, h.k + j0 * D, D, T(1), gq.data(), D);
  }
  std::copy(gq.begin(), gq.end(), dq + i0 * D);
}

// ---- Multi-Token Attention: row blocks over full rows ----------------------------------
// ch maps' rows [r0, r0 + rows) of a W x W map, full width, in one buffer. map(u) is
// addressed by absolute row (row r at map(u) + r * W), as the row kernels of mta_rows.h
// expect; only the stored rows are ever touched.
template <typename T>
struct Band {
  std::vector<T> buf;
  int64_t r0 = 0, rows = 0, W = 0;
  void reset(int64_t ch, int64_t first, int64_t end, int64_t width) {
    r0 = first, rows = end - first, W = width;
    buf.resize((size_t)(ch * rows * W));
  }
  T* map(int64_t u) { return buf.data() + (u * rows - r0) * W; }
  T* row(int64_t u, int64_t r) { return buf.data() + (u * rows + r - r0) * W; }
  int64_t hs() const { return rows * W; }
};

// One call's shapes and pointers; the components are null where absent.
template <typename T>
struct Mta {
  const T *q, *k, *v;
  int64_t B, H, T_, D, ch, G;
  T scale;
  const T *kpre, *mpre, *kpost, *mpost;
  KqGeom pre, post;  // n is set per block
  int64_t hr() const { return kpre ? pre.cq - 1 : 0; }   // rows above a pre-softmax output it reads
  int64_t hp() const { return kpost ? post.cq - 1 : 0; }  // rows above a post-softmax output it reads
  int64_t taps_pre() const { return kpre ? pre.cq * pre.ck : 0; }
  int64_t taps_post() const { return kpost ? post.cq * post.ck : 0; }
  int64_t head(int64_t b, int64_t g, int64_t u) const { return (b * H + g * ch + u) * T_ * D; }  // offset of [T, D]
};

template <typename T>
Mta<T> make_mta(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& a) {
  Mta<T> m{};
  m.q = static_cast<const T*>(q.raw());
  m.k = static_cast<const T*>(k.raw());
  m.v = static_cast<const T*>(v.raw());
  m.B = q.size(0), m.H = q.size(1), m.T_ = q.size(2), m.D = q.size(3);
  m.ch = a.mix_pre.defined() ? a.mix_pre.size(1) : a.mix_post.defined() ? a.mix_post.size(1) : 1;
  m.G = m.H / m.ch;
  m.scale = (T)a.scale;
  auto p = [](const Tensor& t) { return t.defined() ? static_cast<const T*>(t.raw()) : nullptr; };
  m.kpre = p(a.kq_pre), m.mpre = p(a.mix_pre), m.kpost = p(a.kq_post), m.mpost = p(a.mix_post);
  if (m.kpre) m.pre = {0, a.kq_pre.size(1), a.kq_pre.size(2), a.p_pre};
  if (m.kpost) m.post = {0, a.kq_post.size(1), a.kq_post.size(2), a.p_post};
  return m;
}

// Causal softmax of row i (width W) in place; returns the row's log-sum-exp.
template <typename T>
T softmax_row(T* row, int64_t i, int64_t W) {
  const int64_t n = i + 1;
  T mx = neg_inf<T>();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
  const T sum = exp_shift(row, n, mx);
  const T inv = T(1) / sum;
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
  std::fill(row + n, row + W, T(0));
  return mx + std::log(sum);
}

// Raw scores of the group's heads, rows [r0, r1) x columns [0, W), into band s.
template <typename T>
void scores(const Mta<T>& m, int64_t b, int64_t g, int64_t r0, int64_t r1, Band<T>& s) {
  for (int64_t u = 0; u < m.ch; ++u) {
    const int64_t off = m.head(b, g, u);
    gemm<T>(false, true, r1 - r0, s.W, m.D, m.scale, m.q + off + r0 * m.D, m.D, m.k + off, m.D, T(0), s.row(u, r0),
            s.W);
  }
}

// kq_conv of every head of the group, output rows [i0, i1), from band `in` into `out`.
template <typename T>
void conv_band(const Mta<T>& m, int64_t g, const T* K, KqGeom geo, Band<T>& in, Band<T>& out, int64_t i0, int64_t i1) {
  geo.n = in.W;
  const int64_t taps = geo.cq * geo.ck;
  for (int64_t u = 0; u < m.ch; ++u) kq_conv_rows(in.map(u), K + (g * m.ch + u) * taps, out.map(u), geo, i0, i1);
}

template <typename T>
void mta_forward_block(const Mta<T>& m, int64_t b, int64_t g, int64_t i0, int64_t i1, T* o, T* lse, Band<T>& cur,
                       Band<T>& nxt) {
  const int64_t W = i1, hr = m.hr(), hp = m.hp();
  const int64_t s0 = std::max<int64_t>(0, i0 - hp - hr), p0 = std::max<int64_t>(0, i0 - hp);
  cur.reset(m.ch, s0, W, W);
  nxt.reset(m.ch, s0, W, W);
  scores(m, b, g, s0, W, cur);
  if (m.kpre) {  // Ŝ = Conv(Mask_0(S)), eq. (4)
    conv_band(m, g, m.kpre, m.pre, cur, nxt, p0, W);
    std::swap(cur, nxt);
  }
  if (m.mpre) {
    head_mix_rows(cur.map(0), m.mpre + g * m.ch * m.ch, nxt.map(0), W, cur.hs(), m.ch, p0, W);
    std::swap(cur, nxt);
  }
  for (int64_t u = 0; u < m.ch; ++u)
    for (int64_t r = p0; r < W; ++r) {
      const T l = softmax_row(cur.row(u, r), r, W);
      if (r >= i0) lse[(b * m.H + g * m.ch + u) * m.T_ + r] = l;
    }
  if (m.kpost) {  // Mask_0(Conv(P)), eq. (5)
    conv_band(m, g, m.kpost, m.post, cur, nxt, i0, W);
    std::swap(cur, nxt);
  }
  if (m.mpost) {
    head_mix_rows(cur.map(0), m.mpost + g * m.ch * m.ch, nxt.map(0), W, cur.hs(), m.ch, i0, W);
    std::swap(cur, nxt);
  }
  for (int64_t u = 0; u < m.ch; ++u) {
    const int64_t off = m.head(b, g, u);
    gemm<T>(false, false, i1 - i0, m.D, W, T(1), cur.row(u, i0), W, m.v + off, m.D, T(0), o + off + i0 * m.D, m.D);
  }
}

// The per-block partial sums of the components' gradients (each block's own rows only).
struct MtaPartials {
  double *kpre, *mpre, *kpost, *mpost;  // [ch * taps] or [ch * ch], or null
};

template <typename T>
struct BackwardBands {
  Band<T> s, sh, sp, ph, pp, dpp, dph, dp, dsh, ds;
};

template <typename T>
void mta_backward_block(const Mta<T>& m, int64_t b, int64_t g, int64_t i0, int64_t i1, const T* lse, const T* dout,
                        T* dq, T* dk_acc, T* dv_acc, const MtaPartials& part, BackwardBands<T>& bb) {
  const int64_t T_ = m.T_, D = m.D, ch = m.ch, hr = m.hr(), hp = m.hp();
  const int64_t e1 = std::min(T_, i1 + hr), e2 = std::min(T_, e1 + hp), W = e2;
  const int64_t s0 = std::max<int64_t>(0, i0 - hp - hr), p0 = std::max<int64_t>(0, i0 - hp);
  auto fresh = [&](Band<T>& x) -> Band<T>& {
    x.reset(ch, s0, W, W);
    return x;
  };
  const T* Mpre = m.mpre ? m.mpre + g * ch * ch : nullptr;
  const T* Mpost = m.mpost ? m.mpost + g * ch * ch : nullptr;
  // Forward quantities, recomputed: S [s0, e1), Ŝ and S' [p0, e1), P [p0, e1), P̂ and P' [i0, i1).
  Band<T>& S = fresh(bb.s);
  scores(m, b, g, s0, e1, S);
  Band<T>* Sh = &S;
  if (m.kpre) {
    Sh = &fresh(bb.sh);
    conv_band(m, g, m.kpre, m.pre, S, *Sh, p0, e1);
  }
  // P is computed in place over S' (over Ŝ, or S, when nothing needs them later: Ŝ is
  // read again only by the pre-mix gradient, S only by the pre-conv gradient).
  Band<T>* P = Sh;
  if (m.mpre) {
    P = &fresh(bb.sp);
    head_mix_rows(Sh->map(0), Mpre, P->map(0), W, Sh->hs(), ch, p0, e1);
  }
  for (int64_t u = 0; u < ch; ++u) {  // P = exp(S' - lse) at j <= i, 0 above
    const T* l = lse + (b * m.H + g * ch + u) * T_;
    for (int64_t r = p0; r < e1; ++r) {
      T* row = P->row(u, r);
      exp_shift(row, r + 1, l[r]);
      std::fill(row + r + 1, row + W, T(0));
    }
  }
  Band<T>* Ph = P;
  if (m.kpost) {
    Ph = &fresh(bb.ph);
    conv_band(m, g, m.kpost, m.post, *P, *Ph, i0, i1);
  }
  Band<T>* Pp = Ph;
  if (m.mpost) {
    Pp = &fresh(bb.pp);
    head_mix_rows(Ph->map(0), Mpost, Pp->map(0), W, Ph->hs(), ch, i0, i1);
  }
  // Backward: dP' = dO vᵀ [i0, e2) -> dP̂ -> dP [i0, e1) -> dS' -> dŜ -> dS [i0, i1).
  Band<T>& dPp = fresh(bb.dpp);
  for (int64_t u = 0; u < ch; ++u) {
    const int64_t off = m.head(b, g, u);
    gemm<T>(false, true, e2 - i0, W, D, T(1), dout + off + i0 * D, D, m.v + off, D, T(0), dPp.row(u, i0), W);
  }
  Band<T>* dPh = &dPp;
  if (m.mpost) {
    dPh = &fresh(bb.dph);
    head_mix_bwd_rows(Ph->map(0), Mpost, dPp.map(0), dPh->map(0), nullptr, W, dPp.hs(), ch, i0, e2);
    head_mix_bwd_rows(Ph->map(0), Mpost, dPp.map(0), (T*)nullptr, part.mpost, W, dPp.hs(), ch, i0, i1);
  }
  Band<T>* dP = dPh;
  if (m.kpost) {
    dP = &fresh(bb.dp);
    KqGeom geo = m.post;
    geo.n = W;
    const int64_t taps = m.taps_post();
    for (int64_t u = 0; u < ch; ++u) {
      const T* K = m.kpost + (g * ch + u) * taps;
      kq_conv_bwd_rows(dPh->map(u), P->map(u), K, dP->map(u), nullptr, geo, i0, e1);
      kq_conv_bwd_rows(dPh->map(u), P->map(u), K, (T*)nullptr, part.kpost + u * taps, geo, i0, i1);
    }
  }
  for (int64_t u = 0; u < ch; ++u)  // dS' = P (dP - sum_j dP P), in place
    for (int64_t r = i0; r < e1; ++r) {
      T* dr = dP->row(u, r);
      softmax_grad(P->row(u, r), dr, r + 1);
      std::fill(dr + r + 1, dr + W, T(0));
    }
  Band<T>* dSh = dP;
  if (m.mpre) {
    dSh = &fresh(bb.dsh);
    head_mix_bwd_rows(Sh->map(0), Mpre, dP->map(0), dSh->map(0), nullptr, W, dP->hs(), ch, i0, e1);
    head_mix_bwd_rows(Sh->map(0), Mpre, dP->map(0), (T*)nullptr, part.mpre, W, dP->hs(), ch, i0, i1);
  }
  Band<T>* dS = dSh;
  if (m.kpre) {
    dS = &fresh(bb.ds);
    KqGeom geo = m.pre;
    geo.n = W;
    const int64_t taps = m.taps_pre();
    for (int64_t u = 0; u < ch; ++u) {
      const T* K = m.kpre + (g * ch + u) * taps;
      kq_conv_bwd_rows(dSh->map(u), S.map(u), K, dS->map(u), nullptr, geo, i0, i1);
      kq_conv_bwd_rows(dSh->map(u), S.map(u), K, (T*)nullptr, part.kpre + u * taps, geo, i0, i1);
    }
  }
  // dQ = scale dS K, dK += scale dSᵀ Q, dV += P'ᵀ dO over the block's rows (columns < i1).
  for (int64_t u = 0; u < ch; ++u) {
    const int64_t off = m.head(b, g, u), R = i1 - i0;
    gemm<T>(false, false, R, D, i1, m.scale, dS->row(u, i0), W, m.k + off, D, T(0), dq + off + i0 * D, D);
    gemm<T>(true, false, i1, D, R, m.scale, dS->row(u, i0), W, m.q + off + i0 * D, D, T(1), dk_acc + u * T_ * D, D);
    gemm<T>(true, false, i1, D, R, T(1), Pp->row(u, i0), W, dout + off + i0 * D, D, T(1), dv_acc + u * T_ * D, D);
  }
}

// ---- entry points ----------------------------------------------------------------------
template <typename T>
void attention_typed(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& a, const Tensor& ot,
                     const Tensor& lset) {
  const int64_t B = q.size(0), H = q.size(1), T_ = q.size(2), D = q.size(3);
  T* o = static_cast<T*>(ot.raw());
  T* lse = static_cast<T*>(lset.raw());
  if (a.plain()) {
    const int64_t tiles = (T_ + kFlashRows - 1) / kFlashRows;
    for_units(B * H * tiles, [&](int64_t u) {
      const int64_t bh = u / tiles, i0 = u % tiles * kFlashRows, i1 = std::min(T_, i0 + kFlashRows);
      const Head<T> h{static_cast<const T*>(q.raw()) + bh * T_ * D, static_cast<const T*>(k.raw()) + bh * T_ * D,
                      static_cast<const T*>(v.raw()) + bh * T_ * D, T_, D};
      flash_forward_tile(h, (T)a.scale, i0, i1, o + bh * T_ * D, lse + bh * T_);
    });
    return;
  }
  const Mta<T> m = make_mta<T>(q, k, v, a);
  const int64_t blocks = (T_ + kMtaRows - 1) / kMtaRows;
  for_units(B * m.G * blocks, [&](int64_t u) {
    static thread_local Band<T> cur, nxt;
    const int64_t bg = u / blocks, i0 = u % blocks * kMtaRows;
    mta_forward_block(m, bg / m.G, bg % m.G, i0, std::min(T_, i0 + kMtaRows), o, lse, cur, nxt);
  });
}

// Chunk c of a head group's row blocks: [first, end) with about equal causal work.
std::vector<int64_t> chunk_bounds(int64_t blocks, int64_t rows_per_block, int64_t T_) {
  std::vector<double> cum(blocks + 1, 0.0);
  for (int64_t blk = 0; blk < blocks; ++blk)
    cum[blk + 1] = cum[blk] + (double)std::min(T_, (blk + 1) * rows_per_block);  // work ~ row length
  std::vector<int64_t> bounds{0};
  for (int64_t c = 1; c < kChunks; ++c) {
    const double target = cum[blocks] * (double)c / kChunks;
    int64_t blk = bounds.back();
    while (blk < blocks && cum[blk] < target) ++blk;
    bounds.push_back(blk);
  }
  bounds.push_back(blocks);
  return bounds;
}

template <typename T>
void mta_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lset, const Tensor& doutt,
                  const AttentionParams& a, const AttentionGrads& gr) {
  const Mta<T> m = make_mta<T>(q, k, v, a);
  const int64_t T_ = m.T_, D = m.D, ch = m.ch, blocks = (T_ + kMtaRows - 1) / kMtaRows;
  const T* lse = static_cast<const T*>(lset.raw());
  const T* dout = static_cast<const T*>(doutt.raw());
  // Partial sums of the components' gradients, one slot per (b, g, block).
  const int64_t units = m.B * m.G * blocks, tpre = ch * m.taps_pre(), tpost = ch * m.taps_post(), tmix = ch * ch;
  std::vector<double> p_kpre(units * tpre, 0.0), p_kpost(units * tpost, 0.0);
  std::vector<double> p_mpre(m.mpre ? units * tmix : 0, 0.0), p_mpost(m.mpost ? units * tmix : 0, 0.0);
  std::vector<T> dq_scratch;
  T* dq = gr.dq.defined() ? static_cast<T*>(gr.dq.raw()) : (dq_scratch.resize(q.numel()), dq_scratch.data());
  T* dk = gr.dk.defined() ? static_cast<T*>(gr.dk.raw()) : nullptr;
  T* dv = gr.dv.defined() ? static_cast<T*>(gr.dv.raw()) : nullptr;
  const std::vector<int64_t> bounds = chunk_bounds(blocks, kMtaRows, T_);
  // Head groups in waves, so that the chunks' dK/dV buffers stay bounded.
  const int64_t pairs = m.B * m.G, wave = std::max<int64_t>(1, (2 * get_num_threads() + kChunks - 1) / kChunks);
  const int64_t slab = ch * T_ * D;  // one chunk's dK (or dV) for its head group
  std::vector<T> kbuf, vbuf;
  for (int64_t w0 = 0; w0 < pairs; w0 += wave) {
    const int64_t w1 = std::min(pairs, w0 + wave), n = (w1 - w0) * kChunks;
    kbuf.assign(n * slab, T(0));
    vbuf.assign(n * slab, T(0));
    for_units(n, [&](int64_t u) {
      static thread_local BackwardBands<T> bb;
      const int64_t bg = w0 + u / kChunks, c = u % kChunks, b = bg / m.G, g = bg % m.G;
      for (int64_t blk = bounds[c]; blk < bounds[c + 1]; ++blk) {
        const int64_t unit = bg * blocks + blk, i0 = blk * kMtaRows;
        const MtaPartials part{m.kpre ? p_kpre.data() + unit * tpre : nullptr, m.mpre ? p_mpre.data() + unit * tmix : nullptr,
                               m.kpost ? p_kpost.data() + unit * tpost : nullptr,
                               m.mpost ? p_mpost.data() + unit * tmix : nullptr};
        mta_backward_block(m, b, g, i0, std::min(T_, i0 + kMtaRows), lse, dout, dq, kbuf.data() + u * slab,
                           vbuf.data() + u * slab, part, bb);
      }
    });
    // dK, dV of each head group: its chunks' sums added in chunk order.
    parallel_for((w1 - w0) * ch * T_, 64, [&](int64_t s, int64_t e) {
      for (int64_t x = s; x < e; ++x) {
        const int64_t pi = x / (ch * T_), rem = x % (ch * T_), bg = w0 + pi;
        const int64_t off = (bg * ch * T_ + rem) * D;  // [B, H, T, D] with h = g*ch + u
        for (int64_t d = 0; d < D; ++d) {
          T sk = 0, sv = 0;
          for (int64_t c = 0; c < kChunks; ++c) {
            sk += kbuf[(pi * kChunks + c) * slab + rem * D + d];
            sv += vbuf[(pi * kChunks + c) * slab + rem * D + d];
          }
          if (dk) dk[off + d] = sk;
          if (dv) dv[off + d] = sv;
        }
      }
    });
  }
  auto total = [&](const std::vector<double>& p, int64_t taps, const Tensor& out) {
    if (out.defined()) sum_unit_partials(p, m.B, m.G, blocks, taps, static_cast<T*>(out.raw()));
  };
  total(p_kpre, tpre, gr.dkq_pre);
  total(p_mpre, tmix, gr.dmix_pre);
  total(p_kpost, tpost, gr.dkq_post);
  total(p_mpost, tmix, gr.dmix_post);
}

template <typename T>
void flash_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& ot, const Tensor& lset,
                    const Tensor& doutt, const AttentionParams& a, const AttentionGrads& gr) {
  const int64_t BH = q.size(0) * q.size(1), T_ = q.size(2), D = q.size(3);
  const T *o = static_cast<const T*>(ot.raw()), *lse = static_cast<const T*>(lset.raw()),
          *dout = static_cast<const T*>(doutt.raw());
  std::vector<T> Dr(BH * T_);  // rowsum(dO * O): the softmax backward's per-row term
  parallel_for(BH * T_, 256, [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      T acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += dout[r * D + d] * o[r * D + d];
      Dr[r] = acc;
    }
  });
  auto head = [&](int64_t bh) {
    return Head<T>{static_cast<const T*>(q.raw()) + bh * T_ * D, static_cast<const T*>(k.raw()) + bh * T_ * D,
                   static_cast<const T*>(v.raw()) + bh * T_ * D, T_, D};
  };
  const T scale = (T)a.scale;
  const int64_t ktiles = (T_ + kFlashCols - 1) / kFlashCols, qtiles = (T_ + kFlashRows - 1) / kFlashRows;
  if (gr.dk.defined() || gr.dv.defined()) {
    std::vector<T> dk_scratch, dv_scratch;
    T* dk = gr.dk.defined() ? static_cast<T*>(gr.dk.raw()) : (dk_scratch.resize(q.numel()), dk_scratch.data());
    T* dv = gr.dv.defined() ? static_cast<T*>(gr.dv.raw()) : (dv_scratch.resize(q.numel()), dv_scratch.data());
    for_units(BH * ktiles, [&](int64_t u) {
      const int64_t bh = u / ktiles, j0 = u % ktiles * kFlashCols;
      flash_backward_keys(head(bh), scale, dout + bh * T_ * D, lse + bh * T_, Dr.data() + bh * T_, j0,
                          std::min(T_, j0 + kFlashCols), dk + bh * T_ * D, dv + bh * T_ * D);
    });
  }
  if (gr.dq.defined()) {
    T* dq = static_cast<T*>(gr.dq.raw());
    for_units(BH * qtiles, [&](int64_t u) {
      const int64_t bh = u / qtiles, i0 = u % qtiles * kFlashRows;
      flash_backward_queries(head(bh), scale, dout + bh * T_ * D, lse + bh * T_, Dr.data() + bh * T_, i0,
                             std::min(T_, i0 + kFlashRows), dq + bh * T_ * D);
    });
  }
}

// bfloat16 q, k, v (autograd/kernels.h): staged to float32; o bfloat16 or float32, lse and
// the component kernels and their gradients float32, dq/dk/dv bfloat16.
void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& a, const Tensor& o,
               const Tensor& lse) {
  if (q.dtype() == DType::bf16) {
    Bf16Staging s;
    attention(s.in(q), s.in(k), s.in(v), a, s.out(o), lse);
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(q.dtype(), "attention", [&] { attention_typed<scalar_t>(q, k, v, a, o, lse); });
}

void attention_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                   const Tensor& dout, const AttentionParams& a, const AttentionGrads& g) {
  if (q.dtype() == DType::bf16) {
    Bf16Staging s;
    AttentionGrads w = g;
    w.dq = s.out(g.dq), w.dk = s.out(g.dk), w.dv = s.out(g.dv);
    attention_bwd(s.in(q), s.in(k), s.in(v), s.in(o), lse, s.in(dout), a, w);
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(q.dtype(), "attention_backward", [&] {
    if (a.plain()) flash_backward<scalar_t>(q, k, v, o, lse, dout, a, g);
    else mta_backward<scalar_t>(q, k, v, lse, dout, a, g);
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(attention_kernel, cpu, attention);
MTALAB_REGISTER_KERNEL(attention_bwd_kernel, cpu, attention_bwd);

}  // namespace mtalab::cpu
