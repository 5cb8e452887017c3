// Multi-Token Attention (Golovneva et al. 2025, §3) fused on tensor cores: bfloat16 q, k, v,
// float32 accumulation, head dim 32/64/128, every component (key-query convolution before
// and after the softmax, any c_q, c_k and key offset; head mixing before and after, any
// group size c_h). Included by cuda/attention.cu; autograd/cpu/attention.cpp (row blocks
// over full rows) is the readable reference with the same stages.
//
// Tile structure (grid: tiles along x, head groups along y, batch along z; 128 threads = 4
// warps a block; a block owns ALL c_h heads of its group, since head mixing couples them):
//   A tile is 16 query rows x 16 keys. To compute a stage on a tile, a block recomputes the
//   stage's input on the tile grown by the convolutions' halos (a "box": rows above / below,
//   keys left / right, see conv_in / convT_in), down to the raw scores S = scale Q Kᵀ of the
//   outermost box, which come from mma.sync (Q and K rows staged as bfloat16 in shared memory,
//   zeros outside [0, T)). Everything between the products — Mask_0, the convolutions, head
//   mixing, exp(S' - lse), the softmax backward — is a few float32 grids in shared memory
//   ([c_h, box rows, box keys] each) on CUDA cores: the kernels are tiny (c_q c_k taps,
//   c_h² weights). Only boxes exist, never a [T, T] map or a [rows, T] band.
//   mta_lse  per 16 query rows: S' tiles over the keys up to the diagonal, online softmax
//            (row max and sum in shared memory) -> lse of every row (eq. 4's softmax input).
//   mta_out  per 16 query rows: P = exp(S' - lse) over the box of the post-softmax halo (the
//            halo rows' lse come from mta_lse, so no row's softmax is recomputed differently),
//            P' = Mask_0(mix_post(conv_post(P))) (eq. 5), O += P' V on mma; O in shared float32.
//   mta_dr   per 16 query rows: Dr = rowsum(P ∘ dP), dP = conv_postᵀ(mix_postᵀ(Mask_0(dO Vᵀ)))
//            (dO Vᵀ on mma): the softmax backward's row term (with post-softmax components
//            it is not rowsum(dO ∘ O)).
//   mta_dq   per 16 query rows, keys up to the diagonal: the backward tile (bwd_tile) gives
//            dS; dQ += dS K on mma; the block's share of every component's weight gradient
//            (its own tiles' entries) is summed in shared memory, one thread per weight, and
//            written as a per-block partial; mta_reduce adds the partials in block order.
//   mta_dkv  per 16 keys, query tiles from the diagonal down: the same backward tile gives dS
//            and P'; dK += dSᵀ Q, dV += P'ᵀ dO on mma.
// Every output element has one writer summing in an order fixed by the shape: no atomics,
// the same bits on every run. mma operands are bfloat16 (P' and dS rounded, as FlashAttention-2
// does), accumulation float32.
#pragma once
#include "cuda/mma.cuh"

namespace mtalab::cuda::mta_tc {

constexpr int kThreads = 128, kWarps = kThreads / 32;
constexpr int kTile = 16;  // query rows and keys of a tile
// Launch bounds' blocks per SM: with none stated, ptxas held mta_out to 64 registers on sm_90
// and spilled (scripts/check_tensor_cores.py caught it); 1 lets it use what it needs.
constexpr int kMinBlocks = 1;

// A key-query convolution: c_q x c_k taps, key offset p, weights [H, c_q, c_k]; absent
// (w null) it is the identity (one tap of weight 1).
struct Conv {
  int cq = 1, ck = 1, p = 0;
  const float* w = nullptr;
};

// A box around a tile: rows [i0 - top, i0 + kTile + bottom), keys [j0 - left, j0 + kTile + right).
struct Box {
  int top = 0, bottom = 0, left = 0, right = 0;
  __host__ __device__ int rows() const { return kTile + top + bottom; }
  __host__ __device__ int cols() const { return kTile + left + right; }
};
// What a convolution's output on box b reads (eq. 4: rows i-(c_q-1)..i, keys j-p..j-p+c_k-1) ...
__host__ __device__ inline Box conv_in(Box b, const Conv& c) {
  return {b.top + c.cq - 1, b.bottom, b.left + c.p, b.right + c.ck - 1 - c.p};
}
// ... and what its input gradient on box b reads (the transposed convolution).
__host__ __device__ inline Box convT_in(Box b, const Conv& c) {
  return {b.top, b.bottom + c.cq - 1, b.left + c.ck - 1 - c.p, b.right + c.p};
}
__host__ __device__ inline Box hull(Box a, Box b) {
  return {a.top > b.top ? a.top : b.top, a.bottom > b.bottom ? a.bottom : b.bottom,
          a.left > b.left ? a.left : b.left, a.right > b.right ? a.right : b.right};
}

// One call: shapes, operands, components and outputs (null where not asked).
struct Params {
  const bfloat16 *q, *k, *v;
  const void* dout;  // bfloat16 or float32 (dout_bf16)
  void* o;           // bfloat16 or float32 (o_bf16)
  float *lse, *Dr;
  void *dq, *dk, *dv;  // each bfloat16 or float32
  bool dout_bf16, o_bf16, dq_bf16, dk_bf16, dv_bf16;
  int B, H, T, D, ch;
  float scale;
  Conv pre, post;
  const float *mpre, *mpost;  // [H / c_h, c_h, c_h] or null
  float* partial;             // mta_dq: per-block weight-gradient partials
  __host__ __device__ int G() const { return H / ch; }
  __host__ __device__ int tiles() const { return (T + kTile - 1) / kTile; }
  __host__ __device__ int taps_pre() const { return pre.w ? pre.cq * pre.ck : 0; }
  __host__ __device__ int taps_post() const { return post.w ? post.cq * post.ck : 0; }
  // Weight gradients of one head group, in the partials: kq_pre, mix_pre, kq_post, mix_post.
  __host__ __device__ int n_weights() const {
    return ch * taps_pre() + (mpre ? ch * ch : 0) + ch * taps_post() + (mpost ? ch * ch : 0);
  }
};

enum class Kind { lse, out, dr, dq, dkv };

// Shared-memory plan of a kernel: the boxes and where each grid lives (float offsets).
struct Plan {
  Box s, p, c, b, y;  // raw scores; Ŝ and P; dP' and dP̂; dP, dS' and dŜ; the tile itself
  int S, Sh, P, Ph, Pp, dPp, dPh, dP, dSh, dS;  // grids [c_h, rows, cols]
  int acc, acc2, stat, part;                   // accumulators [c_h, 16, D] x2, [c_h, 16] x2, weights
  int stage_a, stage_b, stage_t;                // bfloat16 staging (offsets in floats)
  int rows_a, rows_b;                           // staged rows of each (multiples of 16)
  int floats;
  __host__ __device__ size_t bytes() const { return (size_t)floats * 4; }
};

__host__ __device__ inline int round16(int x) { return (x + 15) / 16 * 16; }

__host__ __device__ inline Plan make_plan(Kind kind, const Params& prm) {
  Plan pl;
  const Box y{};
  pl.y = y;
  switch (kind) {
    case Kind::lse:
      pl.p = y, pl.c = y, pl.b = y;
      break;
    case Kind::out:
      pl.p = conv_in(y, prm.post), pl.c = y, pl.b = y;
      break;
    case Kind::dr:
      pl.p = y, pl.c = convT_in(y, prm.post), pl.b = y;
      break;
    default:  // the backward tile
      pl.b = convT_in(y, prm.pre);
      pl.c = convT_in(pl.b, prm.post);
      pl.p = hull(pl.b, conv_in(y, prm.post));
  }
  pl.s = conv_in(pl.p, prm.pre);
  const int ch = prm.ch, D = prm.D, tt = kTile * kTile;
  int at = 0;
  auto grid = [&](const Box& b) {
    const int o = at;
    at += ch * b.rows() * b.cols();
    return o;
  };
  pl.S = grid(pl.s), pl.Sh = grid(pl.p), pl.P = grid(pl.p);
  pl.Ph = at, at += ch * tt;
  pl.Pp = at, at += ch * tt;
  pl.dPp = grid(pl.c), pl.dPh = grid(pl.c);
  pl.dP = grid(pl.b), pl.dSh = grid(pl.b);
  pl.dS = at, at += ch * tt;
  pl.acc = at, at += ch * kTile * D;
  pl.acc2 = at, at += kind == Kind::dkv ? ch * kTile * D : 0;
  pl.stat = at, at += 2 * ch * kTile;
  pl.part = at, at += kind == Kind::dq ? prm.n_weights() : 0;
  at = (at + 3) / 4 * 4;  // 16-byte aligned staging
  pl.rows_a = round16(pl.s.rows() > pl.c.rows() ? pl.s.rows() : pl.c.rows());
  pl.rows_b = round16(pl.s.cols() > pl.c.cols() ? pl.s.cols() : pl.c.cols());
  pl.stage_a = at, at += pl.rows_a * D / 2;
  pl.stage_b = at, at += pl.rows_b * D / 2;
  pl.stage_t = at, at += tt / 2;
  pl.floats = at;
  return pl;
}

// ---- device pieces ----------------------------------------------------------------------
__device__ __forceinline__ bool causal(int r, int c, int T) { return r < T && c >= 0 && c <= r; }

// A grid: box rows [r0, r0 + nr) x keys [c0, c0 + nc) of each head, float32 in shared memory.
struct Grid {
  float* p;
  int r0, c0, nr, nc;
  __device__ float& at(int u, int r, int c) const { return p[(u * nr + r - r0) * nc + c - c0]; }
  __device__ float get(int u, int r, int c) const {  // 0 outside the box
    return r >= r0 && r < r0 + nr && c >= c0 && c < c0 + nc ? at(u, r, c) : 0.f;
  }
  __device__ int size(int ch) const { return ch * nr * nc; }
  // Element e of the grid: head, row, key.
  __device__ void coords(int e, int& u, int& r, int& c) const {
    u = e / (nr * nc), r = r0 + e / nc % nr, c = c0 + e % nc;
  }
};
__device__ __forceinline__ Grid grid_at(float* smem, int off, const Box& b, int i0, int j0) {
  return {smem + off, i0 - b.top, j0 - b.left, b.rows(), b.cols()};
}

__device__ __forceinline__ uint32_t pk(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }

// C[M, N] (+)= A[M, K] B[K, N] over the block's warps: warp w takes the 16 x 8 output tiles
// w, w + 4, ...; a(i, k) and b(k, n) return bfloat16 bits, store(i, j, x) receives each
// tile's sum (called for every element of the padded tiles). M a multiple of 16, K of 16.
template <class A, class B, class C>
__device__ __forceinline__ void warp_gemm(int M, int N, int K, A a, B b, C store) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int mt = M / 16, nt = (N + 7) / 8;
  for (int tile = warp; tile < mt * nt; tile += kWarps) {  // warp-uniform trip count
    const int m0 = tile / nt * 16, n0 = tile % nt * 8;
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    for (int k0 = 0; k0 < K; k0 += 16) {
      const int k1 = k0 + 2 * t;
      const uint32_t af[4] = {pk(a(m0 + g, k1), a(m0 + g, k1 + 1)), pk(a(m0 + g + 8, k1), a(m0 + g + 8, k1 + 1)),
                              pk(a(m0 + g, k1 + 8), a(m0 + g, k1 + 9)),
                              pk(a(m0 + g + 8, k1 + 8), a(m0 + g + 8, k1 + 9))};
      tc::mma_bf16(d, af, pk(b(k1, n0 + g), b(k1 + 1, n0 + g)), pk(b(k1 + 8, n0 + g), b(k1 + 9, n0 + g)));
    }
    store(m0 + g, n0 + 2 * t, d[0]), store(m0 + g, n0 + 2 * t + 1, d[1]);
    store(m0 + g + 8, n0 + 2 * t, d[2]), store(m0 + g + 8, n0 + 2 * t + 1, d[3]);
  }
}

__device__ __forceinline__ uint16_t bits_of(float x) { return bf16_bits_from_float(x); }
__device__ __forceinline__ float load_any(const void* p, bool bf, int64_t i) {
  return bf ? float_from_bf16_bits(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}
__device__ __forceinline__ void store_any(void* p, bool bf, int64_t i, float x) {
  if (bf) static_cast<uint16_t*>(p)[i] = bits_of(x);
  else static_cast<float*>(p)[i] = x;
}

// Rows [r0, r0 + n) of one head's [T, D] matrix as bfloat16 into s [npad, D]; rows outside
// [0, T) and past n are zeros.
__device__ __forceinline__ void stage_rows(uint16_t* s, const void* src, bool bf, int64_t base, int r0, int n, int npad, int T, int D) {
  for (int e = threadIdx.x; e < npad * D; e += kThreads) {
    const int i = e / D, r = r0 + i;
    s[e] = i < n && r >= 0 && r < T ? (bf ? static_cast<const uint16_t*>(src)[base + (int64_t)r * D + e % D]
                                          : bits_of(static_cast<const float*>(src)[base + (int64_t)r * D + e % D]))
                                    : (uint16_t)0;
  }
}

struct Block {
  int b, g, i0, j0;  // batch, head group, the tile's first row and key
  __device__ int64_t head(const Params& p, int u) const { return ((int64_t)b * p.H + g * p.ch + u) * p.T * p.D; }
  __device__ int64_t row(const Params& p, int u) const { return ((int64_t)b * p.H + g * p.ch + u) * p.T; }
};

// out = Mask_0(x_r · y_c) (scaled) on grid o, for every head: x rows are the grid's rows, y
// rows its keys (S = scale Q Kᵀ, dP' = dO Vᵀ).
__device__ __forceinline__ void products(const Params& p, const Plan& pl, float* smem, const Block& bk, const Grid& o, const void* x,
                         bool xbf, const void* y, float scale) {
  uint16_t* sa = reinterpret_cast<uint16_t*>(smem + pl.stage_a);
  uint16_t* sb = reinterpret_cast<uint16_t*>(smem + pl.stage_b);
  const int D = p.D, M = round16(o.nr);
  for (int u = 0; u < p.ch; ++u) {
    stage_rows(sa, x, xbf, bk.head(p, u), o.r0, o.nr, M, p.T, D);
    stage_rows(sb, y, true, bk.head(p, u), o.c0, o.nc, round16(o.nc), p.T, D);
    __syncthreads();
    warp_gemm(
        M, o.nc, D, [&](int i, int kk) { return sa[i * D + kk]; }, [&](int kk, int n) { return sb[n * D + kk]; },
        [&](int i, int j, float d) {
          if (i < o.nr && j < o.nc) {
            const int r = o.r0 + i, c = o.c0 + j;
            o.at(u, r, c) = causal(r, c, p.T) ? scale * d : 0.f;
          }
        });
    __syncthreads();
  }
}

// out = Mask_0(conv(in)) on out's box (eq. 4: out(i, j) reads in rows i-(c_q-1)+a, keys
// j-p+c), or with `transposed` its input gradient, out(i, j) = sum_{a,c} w[a, c]
// in(i+(c_q-1)-a, j+p-c) (in, a gradient, is 0 off the causal region); 0 off the causal region.
__device__ __forceinline__ void conv(const Params& p, const Conv& cv, bool transposed, const Block& bk, const Grid& in,
                                     const Grid& out) {
  const int taps = cv.cq * cv.ck, sg = transposed ? -1 : 1;
  for (int e = threadIdx.x; e < out.size(p.ch); e += kThreads) {
    int u, r, c;
    out.coords(e, u, r, c);
    float s = 0.f;
    if (causal(r, c, p.T)) {
      if (!cv.w) s = in.get(u, r, c);
      else {
        const float* w = cv.w + (bk.g * p.ch + u) * taps;
        for (int a = 0; a < cv.cq; ++a)
          for (int t = 0; t < cv.ck; ++t)
            s += w[a * cv.ck + t] * in.get(u, r + sg * (a - (cv.cq - 1)), c + sg * (t - cv.p));
      }
    }
    out.at(u, r, c) = s;
  }
  __syncthreads();
}
// Head mixing of the group (eq. 6): out_j = sum_i M[i, j] in_i, or its transpose
// out_i = sum_j M[i, j] in_j; the identity when M is null. 0 off the causal region.
__device__ __forceinline__ void mix(const Params& p, const float* M, bool transposed, const Block& bk, const Grid& in,
                    const Grid& out) {
  const int ch = p.ch;
  const float* m = M ? M + bk.g * ch * ch : nullptr;
  for (int e = threadIdx.x; e < out.size(ch); e += kThreads) {
    int u, r, c;
    out.coords(e, u, r, c);
    float s = 0.f;
    if (causal(r, c, p.T)) {
      if (!m) s = in.get(u, r, c);
      else
        for (int x = 0; x < ch; ++x) s += (transposed ? m[u * ch + x] : m[x * ch + u]) * in.get(x, r, c);
    }
    out.at(u, r, c) = s;
  }
  __syncthreads();
}
// P = exp(S' - lse) at j <= i, 0 elsewhere, in place.
__device__ __forceinline__ void exp_lse(const Params& p, const Block& bk, const Grid& x) {
  for (int e = threadIdx.x; e < x.size(p.ch); e += kThreads) {
    int u, r, c;
    x.coords(e, u, r, c);
    float& v = x.at(u, r, c);
    v = causal(r, c, p.T) ? expf(v - p.lse[bk.row(p, u) + r]) : 0.f;
  }
  __syncthreads();
}

// The scores up to S' = mix_pre(conv_pre(Mask_0(S))) on box pl.p (into grid P) from S on pl.s.
__device__ __forceinline__ void forward_scores(const Params& p, const Plan& pl, float* smem, const Block& bk) {
  const Grid S = grid_at(smem, pl.S, pl.s, bk.i0, bk.j0), Sh = grid_at(smem, pl.Sh, pl.p, bk.i0, bk.j0),
             P = grid_at(smem, pl.P, pl.p, bk.i0, bk.j0);
  products(p, pl, smem, bk, S, p.q, true, p.k, p.scale);
  conv(p, p.pre, false, bk, S, Sh);
  mix(p, p.mpre, false, bk, Sh, P);
}
// P' = Mask_0(mix_post(conv_post(P))) on the tile (grid Pp) from P on box pl.p.
__device__ __forceinline__ void forward_post(const Params& p, const Plan& pl, float* smem, const Block& bk) {
  const Grid P = grid_at(smem, pl.P, pl.p, bk.i0, bk.j0), Ph = grid_at(smem, pl.Ph, pl.y, bk.i0, bk.j0),
             Pp = grid_at(smem, pl.Pp, pl.y, bk.i0, bk.j0);
  conv(p, p.post, false, bk, P, Ph);
  mix(p, p.mpost, false, bk, Ph, Pp);
}
// dP = conv_postᵀ(mix_postᵀ(Mask_0(dO Vᵀ))) on box pl.b (grid dP), via dP' and dP̂ on pl.c.
__device__ __forceinline__ void backward_dp(const Params& p, const Plan& pl, float* smem, const Block& bk) {
  const Grid dPp = grid_at(smem, pl.dPp, pl.c, bk.i0, bk.j0), dPh = grid_at(smem, pl.dPh, pl.c, bk.i0, bk.j0),
             dP = grid_at(smem, pl.dP, pl.b, bk.i0, bk.j0);
  products(p, pl, smem, bk, dPp, p.dout, p.dout_bf16, p.v, 1.f);
  mix(p, p.mpost, true, bk, dPp, dPh);
  conv(p, p.post, true, bk, dPh, dP);
}

// The backward tile: dS on the tile (grid dS) and, with want_pp, P' (grid Pp); leaves every
// intermediate grid for the weight gradients.
__device__ __forceinline__ void bwd_tile(const Params& p, const Plan& pl, float* smem, const Block& bk, bool want_pp) {
  forward_scores(p, pl, smem, bk);
  const Grid P = grid_at(smem, pl.P, pl.p, bk.i0, bk.j0);
  exp_lse(p, bk, P);
  if (want_pp) forward_post(p, pl, smem, bk);
  backward_dp(p, pl, smem, bk);
  const Grid dP = grid_at(smem, pl.dP, pl.b, bk.i0, bk.j0), dSh = grid_at(smem, pl.dSh, pl.b, bk.i0, bk.j0),
             dS = grid_at(smem, pl.dS, pl.y, bk.i0, bk.j0);
  for (int e = threadIdx.x; e < dP.size(p.ch); e += kThreads) {  // dS' = P (dP - Dr), in place
    int u, r, c;
    dP.coords(e, u, r, c);
    float& d = dP.at(u, r, c);
    d = causal(r, c, p.T) ? P.at(u, r, c) * (d - p.Dr[bk.row(p, u) + r]) : 0.f;
  }
  __syncthreads();
  mix(p, p.mpre, true, bk, dP, dSh);
  conv(p, p.pre, true, bk, dSh, dS);
}

// acc[u] (+)= op(X_u) Y_u for every head: X the tile's grid (16 x 16, transposed with
// trans), rounded to bfloat16; Y 16 rows of a [T, D] operand from row y0.
__device__ __forceinline__ void tile_product(const Params& p, const Plan& pl, float* smem, const Block& bk, const Grid& x, bool trans,
                             const void* y, bool ybf, int y0, float* acc) {
  uint16_t* st = reinterpret_cast<uint16_t*>(smem + pl.stage_t);
  uint16_t* sb = reinterpret_cast<uint16_t*>(smem + pl.stage_b);
  const int D = p.D;
  for (int u = 0; u < p.ch; ++u) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kThreads) st[e] = bits_of(x.p[u * kTile * kTile + e]);
    stage_rows(sb, y, ybf, bk.head(p, u), y0, kTile, kTile, p.T, D);
    __syncthreads();
    float* a = acc + u * kTile * D;
    warp_gemm(
        kTile, D, kTile, [&](int i, int kk) { return trans ? st[kk * kTile + i] : st[i * kTile + kk]; },
        [&](int kk, int n) { return sb[kk * D + n]; }, [&](int i, int j, float d) { a[i * D + j] += d; });
    __syncthreads();
  }
}

__device__ __forceinline__ Block block_of(int i0, int j0) { return {(int)blockIdx.z, (int)blockIdx.y, i0, j0}; }
__device__ __forceinline__ void zero(float* x, int n) {
  for (int e = threadIdx.x; e < n; e += kThreads) x[e] = 0.f;
  __syncthreads();
}
// Rows [r0, r0 + 16) of acc [c_h, 16, D] (times s) to a [B, H, T, D] output.
__device__ __forceinline__ void write_rows(const Params& p, const Block& bk, const float* acc, void* out, bool bf, int r0, float s) {
  for (int e = threadIdx.x; e < p.ch * kTile * p.D; e += kThreads) {
    const int u = e / (kTile * p.D), i = e / p.D % kTile, d = e % p.D;
    if (r0 + i < p.T) store_any(out, bf, bk.head(p, u) + (int64_t)(r0 + i) * p.D + d, s * acc[e]);
  }
}

// ---- kernels ----------------------------------------------------------------------------
__global__ void __launch_bounds__(kThreads, kMinBlocks) mta_lse(Params p) {
  MTALAB_DYNAMIC_SMEM(float, smem);
  const Plan pl = make_plan(Kind::lse, p);
  const int i0 = blockIdx.x * kTile, i1 = dev::min(p.T, i0 + kTile);
  float *m = smem + pl.stat, *l = m + p.ch * kTile;
  for (int e = threadIdx.x; e < p.ch * kTile; e += kThreads) m[e] = -INFINITY, l[e] = 0.f;
  for (int j0 = 0; j0 < i1; j0 += kTile) {
    const Block bk = block_of(i0, j0);
    forward_scores(p, pl, smem, bk);
    const Grid Sp = grid_at(smem, pl.P, pl.p, i0, j0);
    for (int e = threadIdx.x; e < p.ch * kTile; e += kThreads) {  // online softmax, a thread per row
      const int u = e / kTile, r = i0 + e % kTile, n = dev::min(kTile, r - j0 + 1);
      if (r >= p.T || n <= 0) continue;
      float mx = m[e];
      for (int c = 0; c < n; ++c) mx = fmaxf(mx, Sp.at(u, r, j0 + c));
      float s = 0.f;
      for (int c = 0; c < n; ++c) s += expf(Sp.at(u, r, j0 + c) - mx);
      l[e] = l[e] * expf(m[e] - mx) + s;
      m[e] = mx;
    }
    __syncthreads();
  }
  const Block bk = block_of(i0, 0);
  for (int e = threadIdx.x; e < p.ch * kTile; e += kThreads) {
    const int u = e / kTile, r = i0 + e % kTile;
    if (r < p.T) p.lse[bk.row(p, u) + r] = m[e] + logf(l[e]);
  }
}

__global__ void __launch_bounds__(kThreads, kMinBlocks) mta_out(Params p) {
  MTALAB_DYNAMIC_SMEM(float, smem);
  const Plan pl = make_plan(Kind::out, p);
  const int i0 = blockIdx.x * kTile, i1 = dev::min(p.T, i0 + kTile);
  zero(smem + pl.acc, p.ch * kTile * p.D);
  for (int j0 = 0; j0 < i1; j0 += kTile) {
    const Block bk = block_of(i0, j0);
    forward_scores(p, pl, smem, bk);
    exp_lse(p, bk, grid_at(smem, pl.P, pl.p, i0, j0));
    forward_post(p, pl, smem, bk);
    tile_product(p, pl, smem, bk, grid_at(smem, pl.Pp, pl.y, i0, j0), false, p.v, true, j0, smem + pl.acc);
  }
  write_rows(p, block_of(i0, 0), smem + pl.acc, p.o, p.o_bf16, i0, 1.f);
}

__global__ void __launch_bounds__(kThreads, kMinBlocks) mta_dr(Params p) {
  MTALAB_DYNAMIC_SMEM(float, smem);
  const Plan pl = make_plan(Kind::dr, p);
  const int i0 = blockIdx.x * kTile, i1 = dev::min(p.T, i0 + kTile);
  float* acc = smem + pl.stat;
  zero(acc, p.ch * kTile);
  for (int j0 = 0; j0 < i1; j0 += kTile) {
    const Block bk = block_of(i0, j0);
    forward_scores(p, pl, smem, bk);
    const Grid P = grid_at(smem, pl.P, pl.p, i0, j0), dP = grid_at(smem, pl.dP, pl.b, i0, j0);
    exp_lse(p, bk, P);
    backward_dp(p, pl, smem, bk);
    for (int e = threadIdx.x; e < p.ch * kTile; e += kThreads) {
      const int u = e / kTile, r = i0 + e % kTile;
      float s = 0.f;
      for (int c = j0; c < j0 + kTile; ++c) s += P.at(u, r, c) * dP.at(u, r, c);
      acc[e] += s;
    }
    __syncthreads();
  }
  const Block bk = block_of(i0, 0);
  for (int e = threadIdx.x; e < p.ch * kTile; e += kThreads) {
    const int u = e / kTile, r = i0 + e % kTile;
    if (r < p.T) p.Dr[bk.row(p, u) + r] = acc[e];
  }
}

// This tile's entries of every component's weight gradient, added to the block's sums w
// (a thread per weight, the tile's entries in row-major order).
__device__ __forceinline__ void weight_grads(const Params& p, const Plan& pl, float* smem, const Block& bk, float* w) {
  const int ch = p.ch, i0 = bk.i0, j0 = bk.j0;
  const Grid S = grid_at(smem, pl.S, pl.s, i0, j0), Sh = grid_at(smem, pl.Sh, pl.p, i0, j0),
             P = grid_at(smem, pl.P, pl.p, i0, j0), Ph = grid_at(smem, pl.Ph, pl.y, i0, j0),
             dPp = grid_at(smem, pl.dPp, pl.c, i0, j0), dPh = grid_at(smem, pl.dPh, pl.c, i0, j0),
             dSp = grid_at(smem, pl.dP, pl.b, i0, j0), dSh = grid_at(smem, pl.dSh, pl.b, i0, j0);
  // kq_pre: sum dŜ(i, j) Mask_0(S)(i-(c_q-1)+a, j-p+t); kq_post: sum dP̂(i, j) P(...).
  auto conv_grad = [&](const Conv& cv, const Grid& go, const Grid& x, float* out) {
    const int taps = cv.cq * cv.ck;
    for (int e = threadIdx.x; e < ch * taps; e += kThreads) {
      const int u = e / taps, a = e % taps / cv.ck, t = e % cv.ck;
      float s = 0.f;
      for (int r = i0; r < i0 + kTile; ++r)
        for (int c = j0; c < j0 + kTile; ++c)
          s += go.at(u, r, c) * x.get(u, r - (cv.cq - 1) + a, c - cv.p + t);
      out[e] += s;
    }
  };
  // mix: sum <x_i, gout_j> over the tile.
  auto mix_grad = [&](const Grid& x, const Grid& go, float* out) {
    for (int e = threadIdx.x; e < ch * ch; e += kThreads) {
      const int i = e / ch, j = e % ch;
      float s = 0.f;
      for (int r = i0; r < i0 + kTile; ++r)
        for (int c = j0; c < j0 + kTile; ++c) s += x.at(i, r, c) * go.at(j, r, c);
      out[e] += s;
    }
  };
  if (p.pre.w) conv_grad(p.pre, dSh, S, w), w += ch * p.taps_pre();
  if (p.mpre) mix_grad(Sh, dSp, w), w += ch * ch;
  if (p.post.w) conv_grad(p.post, dPh, P, w), w += ch * p.taps_post();
  if (p.mpost) mix_grad(Ph, dPp, w);
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads, kMinBlocks) mta_dq(Params p) {
  MTALAB_DYNAMIC_SMEM(float, smem);
  const Plan pl = make_plan(Kind::dq, p);
  const int i0 = blockIdx.x * kTile, i1 = dev::min(p.T, i0 + kTile), nw = p.n_weights();
  const bool weights = p.partial != nullptr;
  zero(smem + pl.acc, p.ch * kTile * p.D);
  zero(smem + pl.part, nw);
  for (int j0 = 0; j0 < i1; j0 += kTile) {
    const Block bk = block_of(i0, j0);
    bwd_tile(p, pl, smem, bk, weights && p.mpost);
    if (p.dq) tile_product(p, pl, smem, bk, grid_at(smem, pl.dS, pl.y, i0, j0), false, p.k, true, j0, smem + pl.acc);
    if (weights) weight_grads(p, pl, smem, bk, smem + pl.part);
  }
  const Block bk = block_of(i0, 0);
  if (p.dq) write_rows(p, bk, smem + pl.acc, p.dq, p.dq_bf16, i0, p.scale);
  if (weights) {
    const int64_t unit = ((int64_t)bk.b * p.G() + bk.g) * p.tiles() + blockIdx.x;
    for (int e = threadIdx.x; e < nw; e += kThreads) p.partial[unit * nw + e] = smem[pl.part + e];
  }
}

__global__ void __launch_bounds__(kThreads, kMinBlocks) mta_dkv(Params p) {
  MTALAB_DYNAMIC_SMEM(float, smem);
  const Plan pl = make_plan(Kind::dkv, p);
  const int j0 = blockIdx.x * kTile;
  zero(smem + pl.acc, 2 * p.ch * kTile * p.D);  // acc2 follows acc
  for (int i0 = j0; i0 < p.T; i0 += kTile) {
    const Block bk = block_of(i0, j0);
    bwd_tile(p, pl, smem, bk, p.dv != nullptr);
    if (p.dk) tile_product(p, pl, smem, bk, grid_at(smem, pl.dS, pl.y, i0, j0), true, p.q, true, i0, smem + pl.acc);
    if (p.dv)
      tile_product(p, pl, smem, bk, grid_at(smem, pl.Pp, pl.y, i0, j0), true, p.dout, p.dout_bf16, i0,
                   smem + pl.acc2);
  }
  const Block bk = block_of(j0, j0);
  if (p.dk) write_rows(p, bk, smem + pl.acc, p.dk, p.dk_bf16, j0, p.scale);
  if (p.dv) write_rows(p, bk, smem + pl.acc2, p.dv, p.dv_bf16, j0, 1.f);
}

// out[g, w] = sum over batch, then query tiles, of the partials (a fixed order).
__global__ void mta_reduce(const float* partial, int B, int G, int tiles, int nw, int w0, int n, float* out) {
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < G * n; e += gridDim.x * blockDim.x) {
    const int g = e / n, w = w0 + e % n;
    float s = 0.f;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < tiles; ++t) s += partial[(((int64_t)b * G + g) * tiles + t) * nw + w];
    out[e] = s;
  }
}

}  // namespace mtalab::cuda::mta_tc
