// Causal softmax attention on tensor cores: FlashAttention-2 (Dao 2023, Alg. 1 forward,
// Alg. 2 backward) for bfloat16 q, k, v with float32 accumulation; included by
// cuda/attention.cu (whose float32/float64 band path is the other CUDA route), with
// autograd/cpu/attention.cpp the CPU twin and readable reference.
//
// Tile structure (grid: tiles along x, heads along y, batch along z; 128 threads = 4 warps
// a block; D = 32, 64 or 128):
//   forward   a block owns 64 query rows, warp w rows 16w..16w+15. Q [64, D] comes once
//             (cp.async) and stays in registers as mma A-fragments (ldmatrix). K and V tiles
//             [64, D] stream through shared memory in 2 stages: tile j+1 is in flight
//             (cp.async) while tile j is used; key tiles above the diagonal are never
//             loaded. Per tile a warp computes S = Q Kᵀ [16, 64] in mma accumulators,
//             the online softmax (Alg. 1 lines 8-10) with row max and sum in registers (a
//             row's entries live in one quad: shuffles xor 1, 2), turns the accumulators
//             into P's A-fragments in place and adds P V into O [16, D]. Writes O / l and the
//             row log-sum-exp (log2 domain inside, natural log out).
//   D         Dr = rowsum(dO ∘ O) (FA-2 eq. after Alg. 2 line 4), a warp per row; a
//             float32 dO is also rounded to bfloat16 here for the products below.
//   dK, dV    a block owns 64 keys, warp w keys 16w..16w+15, dK and dV [16, D] in
//             registers. Query tiles [32, D] of Q and dO stream through shared memory in 2
//             stages from the diagonal to T (lse, Dr beside them). Per tile: Sᵀ = K Qᵀ,
//             Pᵀ = exp(scale Sᵀ - lse), dPᵀ = V dOᵀ, dSᵀ = Pᵀ ∘ (dPᵀ - Dr);
//             dV += Pᵀ dO, dK += dSᵀ Q (accumulators reused as A-fragments).
//   dQ        a block owns 64 queries like the forward; key tiles [32, D] of K and V stream
//             in 2 stages up to the diagonal; S, P and dP = dO Vᵀ recomputed, dQ += dS K.
// Every output element has one writer that sums in an order fixed by the shape: no atomics,
// the same bits on every run. Shared-memory tiles are rows of D bfloat16 in 16-byte chunks,
// chunk c of row r stored at c ^ (r % 8) (XOR swizzle): the 8 rows one ldmatrix reads hit 8
// different bank groups (D = 32 has 4 chunks a row: c ^ (r % 4), 2-way conflicts).
#pragma once
#include "autograd/attention_cost.h"
#include "cuda/mma.cuh"

// Loops over register arrays must unroll, or the arrays go to local memory.
#if MTALAB_CUDA_EMU
#define MTALAB_UNROLL
#else
#define MTALAB_UNROLL _Pragma("unroll")
#endif

namespace mtalab::cuda::flash {

constexpr int kThreads = 128;  // 4 warps
// The tiles (autograd/attention_cost.h holds them, for the cost model too).
constexpr int kRowsFwd = kFlashRowsFwd;  // query rows per forward / dQ block
constexpr int kColsFwd = kFlashColsFwd;  // keys per forward tile
constexpr int kKeysBwd = kFlashKeysBwd;  // keys per dK/dV block
template <int D>
constexpr int kRowsBwd = kFlashRowsBwd<D>;  // queries per dK/dV tile
constexpr int kColsDq = kFlashColsDq;       // keys per dQ tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

inline bool supported_head_dim(int64_t D) { return D == 32 || D == 64 || D == 128; }

// Element (r, c) of a swizzled [rows, D] tile.
template <int D>
__device__ __forceinline__ int sw(int r, int c) {
  constexpr int mask = (D / 8 < 8 ? D / 8 : 8) - 1;
  return r * D + ((((c >> 3) ^ (r & mask)) << 3) | (c & 7));
}

// Rows [r0, r0 + R) of a row-major [T, D] matrix into a swizzled tile by cp.async; rows at
// or past T become zeros (so 0 * garbage cannot make NaN). The caller commits the group.
template <int D, int R>
__device__ __forceinline__ void load_tile(uint16_t* s, const bfloat16* g, int64_t r0, int64_t T) {
  constexpr int chunks = D / 8;
  for (int i = threadIdx.x; i < R * chunks; i += kThreads) {
    const int r = i / chunks, c = i % chunks * 8;
    const bool ok = r0 + r < T;
    tc::cp_async16(s + sw<D>(r, c), g + (ok ? (r0 + r) * D + c : 0), ok);
  }
}

// A-fragment of rows [r0, r0 + 16), columns [k0, k0 + 16) of a tile.
template <int D>
__device__ __forceinline__ void frag_a(uint32_t a[4], const uint16_t* s, int r0, int k0, int lane) {
  tc::ldmatrix_x4(a, s + sw<D>(r0 + lane % 16, k0 + lane / 16 * 8));
}
// B-fragments of two n-tiles from a tile stored [n][k] (K in S = Q Kᵀ): n rows [n0, n0 + 16),
// k columns [k0, k0 + 16). b[0], b[1] for n0..n0+7; b[2], b[3] for n0+8..n0+15.
template <int D>
__device__ __forceinline__ void frag_b_nk(uint32_t b[4], const uint16_t* s, int n0, int k0, int lane) {
  tc::ldmatrix_x4(b, s + sw<D>(n0 + lane / 16 * 8 + lane % 8, k0 + (lane / 8) % 2 * 8));
}
// The same from a tile stored [k][n] (V in O = P V), by ldmatrix.trans.
template <int D>
__device__ __forceinline__ void frag_b_kn(uint32_t b[4], const uint16_t* s, int k0, int n0, int lane) {
  tc::ldmatrix_x4_trans(b, s + sw<D>(k0 + (lane / 8) % 2 * 8 + lane % 8, n0 + lane / 16 * 8));
}
// Accumulators of two adjacent n-tiles [16, 16] as the A-fragment of the next product
// (the C layout of columns 2t, 2t+1 is the A layout's: FA-2's P stays in registers).
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = tc::pack_bf16(c0[0], c0[1]);
  a[1] = tc::pack_bf16(c0[2], c0[3]);
  a[2] = tc::pack_bf16(c1[0], c1[1]);
  a[3] = tc::pack_bf16(c1[2], c1[3]);
}
// acc[n-tiles] += A-rows [r0, r0 + 16) of sa · B where B = rows [n0, n0 + 8 N) of sb stored
// [n][k], over k < D (S = Q Kᵀ and its kin).
template <int D, int N>
__device__ __forceinline__ void gemm_nt(float (*acc)[4], const uint16_t* sa, int r0, const uint16_t* sb, int lane) {
  MTALAB_UNROLL
  for (int k0 = 0; k0 < D; k0 += 16) {
    uint32_t a[4];
    frag_a<D>(a, sa, r0, k0, lane);
    MTALAB_UNROLL
    for (int n = 0; n < N; n += 2) {
      uint32_t b[4];
      frag_b_nk<D>(b, sb, n * 8, k0, lane);
      tc::mma_bf16(acc[n], a, b[0], b[1]);
      tc::mma_bf16(acc[n + 1], a, b[2], b[3]);
    }
  }
}
// acc[D / 8 n-tiles] += P · B, P [16, 8 K] in accumulators, B rows [0, 8 K) of sb stored [k][n].
template <int D, int K>
__device__ __forceinline__ void gemm_pv(float (*acc)[4], const float (*p)[4], const uint16_t* sb, int lane) {
  MTALAB_UNROLL
  for (int k = 0; k < K; k += 2) {
    uint32_t a[4];
    acc_to_a(a, p[k], p[k + 1]);
    MTALAB_UNROLL
    for (int n = 0; n < D / 8; n += 2) {
      uint32_t b[4];
      frag_b_kn<D>(b, sb, k * 8, n * 8, lane);
      tc::mma_bf16(acc[n], a, b[0], b[1]);
      tc::mma_bf16(acc[n + 1], a, b[2], b[3]);
    }
  }
}

__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(bfloat16* p, float x) { *p = bfloat16(x); }
__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const bfloat16* p) { return (float)*p; }

// Row max / sum over the quad that holds a row.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// ---- forward --------------------------------------------------------------------------------
// q, k, v, o [BH, T, D]; lse [BH, T]. scale_log2 = scale · log2(e).
template <int D, typename OutT>
__global__ void __launch_bounds__(kThreads) fwd(const bfloat16* q, const bfloat16* k, const bfloat16* v, OutT* o,
                                                float* lse, int64_t T, float scale_log2) {
  constexpr int Br = kRowsFwd, Bc = kColsFwd, N = Bc / 8;
  MTALAB_DYNAMIC_SMEM(uint16_t, smem);
  uint16_t* sQ = smem;
  uint16_t* sK = sQ + Br * D;      // 2 stages
  uint16_t* sV = sK + 2 * Bc * D;  // 2 stages
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  const int64_t bh = (int64_t)blockIdx.z * gridDim.y + blockIdx.y, q0 = (int64_t)blockIdx.x * Br, base = bh * T * D;
  const int64_t r0 = q0 + warp * 16;                        // this warp's first row
  const int tiles = (int)((dev::min<int64_t>(T, q0 + Br) - 1) / Bc + 1);  // causal: up to the diagonal
  const bool active = r0 < T;                               // warp-uniform
  load_tile<D, Br>(sQ, q + base, q0, T);
  load_tile<D, Bc>(sK, k + base, 0, T);
  load_tile<D, Bc>(sV, v + base, 0, T);
  tc::cp_async_commit();
  uint32_t qa[D / 16][4];
  float acc[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0, 0};  // rows g and g + 8, log2 domain
  for (int j = 0; j < tiles; ++j) {
    const int st = j % 2;
    if (j + 1 < tiles) {  // the next tile flies while this one is used
      load_tile<D, Bc>(sK + (1 - st) * Bc * D, k + base, (int64_t)(j + 1) * Bc, T);
      load_tile<D, Bc>(sV + (1 - st) * Bc * D, v + base, (int64_t)(j + 1) * Bc, T);
    }
    tc::cp_async_commit();  // possibly empty: keeps wait_group 1 meaning "tile j landed"
    tc::cp_async_wait<1>();
    __syncthreads();
    if (active) {
      if (j == 0) {
        MTALAB_UNROLL
        for (int kk = 0; kk < D / 16; ++kk) frag_a<D>(qa[kk], sQ, warp * 16, kk * 16, lane);
      }
      const uint16_t *cK = sK + st * Bc * D, *cV = sV + st * Bc * D;
      float s[N][4] = {};
      MTALAB_UNROLL
      for (int kk = 0; kk < D / 16; ++kk)
        MTALAB_UNROLL
        for (int n = 0; n < N; n += 2) {
          uint32_t b[4];
          frag_b_nk<D>(b, cK, n * 8, kk * 16, lane);
          tc::mma_bf16(s[n], qa[kk], b[0], b[1]);
          tc::mma_bf16(s[n + 1], qa[kk], b[2], b[3]);
        }
      const int64_t j0 = (int64_t)j * Bc;
      const bool diagonal = j0 + Bc - 1 > r0;  // some key of the tile lies above some row of the warp
      MTALAB_UNROLL
      for (int r = 0; r < 2; ++r) {
        const int64_t row = r0 + g + 8 * r;
        float mx = -INFINITY;
        MTALAB_UNROLL
        for (int n = 0; n < N; ++n)
          MTALAB_UNROLL
          for (int e = 0; e < 2; ++e) {
            float& x = s[n][2 * r + e];
            x = diagonal && j0 + n * 8 + 2 * t + e > row ? -INFINITY : x * scale_log2;
            mx = fmaxf(mx, x);
          }
        const float mnew = fmaxf(m[r], quad_max(mx));
        const float ref = mnew == -INFINITY ? 0.0f : mnew;  // a row with no key yet
        const float corr = exp2f(m[r] - ref);
        float sum = 0;
        MTALAB_UNROLL
        for (int n = 0; n < N; ++n)
          MTALAB_UNROLL
          for (int e = 0; e < 2; ++e) sum += (s[n][2 * r + e] = exp2f(s[n][2 * r + e] - ref));
        l[r] = l[r] * corr + sum;  // this thread's share; the quad sums at the end
        MTALAB_UNROLL
        for (int n = 0; n < D / 8; ++n) acc[n][2 * r] *= corr, acc[n][2 * r + 1] *= corr;
        m[r] = mnew;
      }
      gemm_pv<D, N>(acc, s, cV, lane);
    }
    __syncthreads();  // stage st is refilled next iteration
  }
  if (!active) return;
  MTALAB_UNROLL
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r0 + g + 8 * r;
    const float sum = quad_sum(l[r]);
    if (row >= T) continue;
    const float inv = 1.0f / sum;
    OutT* orow = o + base + row * D;
    MTALAB_UNROLL
    for (int n = 0; n < D / 8; ++n)
      store(orow + n * 8 + 2 * t, acc[n][2 * r] * inv), store(orow + n * 8 + 2 * t + 1, acc[n][2 * r + 1] * inv);
    if (t == 0) lse[bh * T + row] = (m[r] + log2f(sum)) * kLn2;
  }
}

// ---- backward -------------------------------------------------------------------------------
// Dr[row] = dO[row] · O[row]; dob (bfloat16 dO) written when dout is not bfloat16 already.
template <typename OT>
__global__ void row_dots(const OT* dout, const OT* o, float* Dr, bfloat16* dob, int64_t rows, int D) {
  const int64_t row = blockIdx.x * (int64_t)(kThreads / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  float s = 0;
  for (int d = lane; d < D; d += 32) {
    const float x = load(dout + row * D + d);
    s += x * load(o + row * D + d);
    if (dob) dob[row * D + d] = bfloat16(x);
  }
  s = warp_sum(s);
  if (lane == 0) Dr[row] = s;
}

// dK, dV of 64 keys per block (see the top). dk or dv nullptr: not written.
template <int D, typename GT>
__global__ void __launch_bounds__(kThreads) bwd_kv(const bfloat16* q, const bfloat16* k, const bfloat16* v,
                                                   const bfloat16* dout, const float* lse, const float* Dr, GT* dk,
                                                   GT* dv, int64_t T, float scale, float scale_log2) {
  constexpr int Bk = kKeysBwd, Bq = kRowsBwd<D>, N = Bq / 8;
  MTALAB_DYNAMIC_SMEM(uint16_t, smem);
  uint16_t* sK = smem;
  uint16_t* sV = sK + Bk * D;
  uint16_t* sQ = sV + Bk * D;       // 2 stages
  uint16_t* sdO = sQ + 2 * Bq * D;  // 2 stages
  __shared__ float sL[Bq], sD[Bq];  // lse (log2 domain) and Dr of the current query tile
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  const int64_t bh = (int64_t)blockIdx.z * gridDim.y + blockIdx.y, k0 = (int64_t)blockIdx.x * Bk, base = bh * T * D;
  const int64_t c0 = k0 + warp * 16;  // this warp's first key
  const int first = (int)(k0 / Bq), tiles = (int)((T + Bq - 1) / Bq);  // query tiles from the diagonal
  load_tile<D, Bk>(sK, k + base, k0, T);
  load_tile<D, Bk>(sV, v + base, k0, T);
  load_tile<D, Bq>(sQ, q + base, (int64_t)first * Bq, T);
  load_tile<D, Bq>(sdO, dout + base, (int64_t)first * Bq, T);
  tc::cp_async_commit();
  float gk[D / 8][4] = {}, gv[D / 8][4] = {};
  for (int j = first; j < tiles; ++j) {
    const int st = (j - first) % 2;
    const int64_t i0 = (int64_t)j * Bq;
    if (j + 1 < tiles) {
      load_tile<D, Bq>(sQ + (1 - st) * Bq * D, q + base, i0 + Bq, T);
      load_tile<D, Bq>(sdO + (1 - st) * Bq * D, dout + base, i0 + Bq, T);
    }
    tc::cp_async_commit();
    if (threadIdx.x < Bq) {
      const int64_t i = i0 + threadIdx.x;
      sL[threadIdx.x] = i < T ? lse[bh * T + i] * kLog2e : 0.0f;
      sD[threadIdx.x] = i < T ? Dr[bh * T + i] : 0.0f;
    }
    tc::cp_async_wait<1>();
    __syncthreads();
    // Warp-uniform: a warp whose keys all lie after the tile's last query has nothing here.
    if (c0 < T && c0 <= i0 + Bq - 1) {
      const uint16_t *cQ = sQ + st * Bq * D, *cdO = sdO + st * Bq * D;
      float p[N][4] = {}, dp[N][4] = {};
      gemm_nt<D, N>(p, sK, warp * 16, cQ, lane);    // Sᵀ = K Qᵀ
      gemm_nt<D, N>(dp, sV, warp * 16, cdO, lane);  // dPᵀ = V dOᵀ
      MTALAB_UNROLL
      for (int n = 0; n < N; ++n)
        MTALAB_UNROLL
        for (int e = 0; e < 4; ++e) {
          const int64_t key = c0 + g + 8 * (e / 2);
          const int col = n * 8 + 2 * t + e % 2;
          const int64_t query = i0 + col;
          const float pv = query < key || query >= T ? 0.0f : exp2f(p[n][e] * scale_log2 - sL[col]);
          p[n][e] = pv;
          dp[n][e] = pv * (dp[n][e] - sD[col]);  // dSᵀ
        }
      gemm_pv<D, N>(gv, p, cdO, lane);  // dV += Pᵀ dO
      gemm_pv<D, N>(gk, dp, cQ, lane);  // dK += dSᵀ Q
    }
    __syncthreads();
  }
  MTALAB_UNROLL
  for (int r = 0; r < 2; ++r) {
    const int64_t key = c0 + g + 8 * r;
    if (key >= T) continue;
    MTALAB_UNROLL
    for (int n = 0; n < D / 8; ++n)
      MTALAB_UNROLL
      for (int e = 0; e < 2; ++e) {
        const int64_t at = base + key * D + n * 8 + 2 * t + e;
        if (dk) store(dk + at, gk[n][2 * r + e] * scale);
        if (dv) store(dv + at, gv[n][2 * r + e]);
      }
  }
}

// dQ of 64 queries per block (see the top).
template <int D, typename GT>
__global__ void __launch_bounds__(kThreads) bwd_q(const bfloat16* q, const bfloat16* k, const bfloat16* v,
                                                  const bfloat16* dout, const float* lse, const float* Dr, GT* dq,
                                                  int64_t T, float scale, float scale_log2) {
  constexpr int Br = kRowsFwd, Bc = kColsDq, N = Bc / 8;
  MTALAB_DYNAMIC_SMEM(uint16_t, smem);
  uint16_t* sQ = smem;
  uint16_t* sdO = sQ + Br * D;
  uint16_t* sK = sdO + Br * D;     // 2 stages
  uint16_t* sV = sK + 2 * Bc * D;  // 2 stages
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  const int64_t bh = (int64_t)blockIdx.z * gridDim.y + blockIdx.y, q0 = (int64_t)blockIdx.x * Br, base = bh * T * D;
  const int64_t r0 = q0 + warp * 16;
  const int tiles = (int)((dev::min<int64_t>(T, q0 + Br) - 1) / Bc + 1);
  const bool active = r0 < T;
  load_tile<D, Br>(sQ, q + base, q0, T);
  load_tile<D, Br>(sdO, dout + base, q0, T);
  load_tile<D, Bc>(sK, k + base, 0, T);
  load_tile<D, Bc>(sV, v + base, 0, T);
  tc::cp_async_commit();
  float L[2], Dd[2];
  MTALAB_UNROLL
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r0 + g + 8 * r;
    L[r] = row < T ? lse[bh * T + row] * kLog2e : 0.0f;
    Dd[r] = row < T ? Dr[bh * T + row] : 0.0f;
  }
  float gq[D / 8][4] = {};
  for (int j = 0; j < tiles; ++j) {
    const int st = j % 2;
    const int64_t j0 = (int64_t)j * Bc;
    if (j + 1 < tiles) {
      load_tile<D, Bc>(sK + (1 - st) * Bc * D, k + base, j0 + Bc, T);
      load_tile<D, Bc>(sV + (1 - st) * Bc * D, v + base, j0 + Bc, T);
    }
    tc::cp_async_commit();
    tc::cp_async_wait<1>();
    __syncthreads();
    if (active && j0 <= r0 + 15) {  // warp-uniform: keys after the warp's last row contribute nothing
      const uint16_t *cK = sK + st * Bc * D, *cV = sV + st * Bc * D;
      float p[N][4] = {}, dp[N][4] = {};
      gemm_nt<D, N>(p, sQ, warp * 16, cK, lane);    // S = Q Kᵀ
      gemm_nt<D, N>(dp, sdO, warp * 16, cV, lane);  // dP = dO Vᵀ
      MTALAB_UNROLL
      for (int n = 0; n < N; ++n)
        MTALAB_UNROLL
        for (int e = 0; e < 4; ++e) {
          const int r = e / 2;
          const int64_t row = r0 + g + 8 * r, key = j0 + n * 8 + 2 * t + e % 2;
          const float pv = key > row || row >= T ? 0.0f : exp2f(p[n][e] * scale_log2 - L[r]);
          dp[n][e] = pv * (dp[n][e] - Dd[r]);  // dS
        }
      gemm_pv<D, N>(gq, dp, cK, lane);  // dQ += dS K
    }
    __syncthreads();
  }
  if (!active) return;
  MTALAB_UNROLL
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r0 + g + 8 * r;
    if (row >= T) continue;
    MTALAB_UNROLL
    for (int n = 0; n < D / 8; ++n)
      MTALAB_UNROLL
      for (int e = 0; e < 2; ++e) store(dq + base + row * D + n * 8 + 2 * t + e, gq[n][2 * r + e] * scale);
  }
}

// Dynamic shared memory of each kernel, bytes.
template <int D>
constexpr size_t fwd_smem() {
  return (size_t)(kRowsFwd + 4 * kColsFwd) * D * 2;
}
template <int D>
constexpr size_t bwd_kv_smem() {
  return (size_t)(2 * kKeysBwd + 4 * kRowsBwd<D>) * D * 2;
}
template <int D>
constexpr size_t bwd_q_smem() {
  return (size_t)(2 * kRowsFwd + 4 * kColsDq) * D * 2;
}

}  // namespace mtalab::cuda::flash
