// CUDA key-query convolution of Multi-Token Attention (Golovneva et al. 2025, §3.1,
// eqs. 4-5), forward, input gradient and kernel gradient, causal as on the CPU: only
// entries j <= i are read (Mask_0 on the input) and outputs above the diagonal are
// written as 0 without being computed (autograd/kernels.h states the formula).
//
// Tiled path: a block owns a 16 x 64 tile of one [T, T] map; it stages the tile's halo
// (c_q - 1 rows above for the forward, below for the input gradient; the key window
// around it) in shared memory with masked and outside entries as 0, so the inner loop
// has no bounds checks. Tiles wholly above the diagonal only write zeros. Kernel sizes
// whose halo does not fit 48 KiB take a direct path reading global memory.
//
// Kernel gradient: a block per (batch, head, 16 output rows) sums every tap over its
// rows into its own slot of a partial buffer (thread groups split the positions and are
// added in group order), and a second kernel adds the slots per head in (batch, row
// block) order: no float atomics, the same bits on every run.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

constexpr int kTI = 16, kTJ = 64, kBlock = 256;  // tile rows, tile columns, threads
constexpr size_t kSmemLimit = 48 * 1024;

struct Geom {
  int64_t T, cq, ck, p;  // map size, query taps, key taps, key offset (tap c reads column j - p + c)
  int64_t tiles_i, tiles_j;
};

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// x~[r, s]: x inside the causal region, 0 elsewhere (Mask_0 and the zero padding).
template <typename T>
__device__ __forceinline__ T masked(const T* map, int64_t T_, int64_t r, int64_t s) {
  return r >= 0 && r < T_ && s >= 0 && s <= r ? map[r * T_ + s] : T(0);
}
// gout~[i, j]: gout at outputs that exist (i < T, 0 <= j <= i), else 0.
template <typename T>
__device__ __forceinline__ T out_grad(const T* go, int64_t T_, int64_t i, int64_t j) {
  return i >= 0 && i < T_ && j >= 0 && j <= i ? go[i * T_ + j] : T(0);
}

// Which map and tile a block owns: blockIdx.x = (bh * tiles_i + ti) * tiles_j + tj.
struct Tile {
  int64_t bh, i0, j0;
};
__device__ __forceinline__ Tile tile_of(const Geom& g) {
  const int64_t u = blockIdx.x, tj = u % g.tiles_j, ti = u / g.tiles_j % g.tiles_i, bh = u / (g.tiles_j * g.tiles_i);
  return {bh, ti * kTI, tj * kTJ};
}

// ---- forward ---------------------------------------------------------------------------
template <typename T>
__global__ void fwd_tiled(const T* x, const T* K, T* out, Geom g, int64_t H) {
  MTALAB_DYNAMIC_SMEM(T, smem);
  const Tile t = tile_of(g);
  const int64_t HR = kTI + g.cq - 1, HC = kTJ + g.ck - 1, taps = g.cq * g.ck;
  const T* map = x + t.bh * g.T * g.T;
  T* o = out + t.bh * g.T * g.T;
  const int tx = threadIdx.x % kTJ, ty = threadIdx.x / kTJ;
  if (t.j0 > t.i0 + kTI - 1) {  // above the diagonal: zeros, nothing read
    for (int64_t ii = ty; ii < kTI; ii += kBlock / kTJ) {
      const int64_t i = t.i0 + ii, j = t.j0 + tx;
      if (i < g.T && j < g.T) o[i * g.T + j] = T(0);
    }
    return;
  }
  T* halo = smem;          // [HR][HC]: x~[i0 - (cq-1) + hr, j0 - p + hc]
  T* ker = smem + HR * HC;  // [cq][ck]
  for (int64_t e = threadIdx.x; e < HR * HC; e += kBlock)
    halo[e] = masked(map, g.T, t.i0 - (g.cq - 1) + e / HC, t.j0 - g.p + e % HC);
  for (int64_t e = threadIdx.x; e < taps; e += kBlock) ker[e] = K[(t.bh % H) * taps + e];
  __syncthreads();
  for (int64_t ii = ty; ii < kTI; ii += kBlock / kTJ) {
    const int64_t i = t.i0 + ii, j = t.j0 + tx;
    if (i >= g.T || j >= g.T) continue;
    acc_t<T> acc = 0;
    if (j <= i)
      for (int64_t a = 0; a < g.cq; ++a)
        for (int64_t c = 0; c < g.ck; ++c) acc += ker[a * g.ck + c] * halo[(ii + a) * HC + tx + c];
    o[i * g.T + j] = T(acc);
  }
}

// One thread per output, reading global memory: for kernels too large to stage.
template <typename T>
__global__ void fwd_direct(const T* x, const T* K, T* out, Geom g, int64_t BH, int64_t H) {
  const int64_t n = BH * g.T * g.T, taps = g.cq * g.ck;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = e % g.T, i = e / g.T % g.T, bh = e / (g.T * g.T);
    const T* map = x + bh * g.T * g.T;
    const T* ker = K + (bh % H) * taps;
    acc_t<T> acc = 0;
    if (j <= i)
      for (int64_t a = 0; a < g.cq; ++a)
        for (int64_t c = 0; c < g.ck; ++c) acc += ker[a * g.ck + c] * masked(map, g.T, i - (g.cq - 1) + a, j - g.p + c);
    out[e] = T(acc);
  }
}

// ---- input gradient: gx[r, s] = sum_{a,c} K[a,c] gout~[r + cq-1 - a, s + p - c] ----------
template <typename T>
__global__ void gx_tiled(const T* go, const T* K, T* gx, Geom g, int64_t H) {
  MTALAB_DYNAMIC_SMEM(T, smem);
  const Tile t = tile_of(g);  // (i0, j0) = (r0, s0)
  const int64_t HR = kTI + g.cq - 1, HC = kTJ + g.ck - 1, taps = g.cq * g.ck;
  const T* gmap = go + t.bh * g.T * g.T;
  T* o = gx + t.bh * g.T * g.T;
  const int tx = threadIdx.x % kTJ, ty = threadIdx.x / kTJ;
  if (t.j0 > t.i0 + kTI - 1) {  // Mask_0: no gradient above the diagonal
    for (int64_t ii = ty; ii < kTI; ii += kBlock / kTJ) {
      const int64_t r = t.i0 + ii, s = t.j0 + tx;
      if (r < g.T && s < g.T) o[r * g.T + s] = T(0);
    }
    return;
  }
  T* halo = smem;  // [HR][HC]: gout~[r0 + hr, s0 + p - (ck-1) + hc]
  T* ker = smem + HR * HC;
  for (int64_t e = threadIdx.x; e < HR * HC; e += kBlock)
    halo[e] = out_grad(gmap, g.T, t.i0 + e / HC, t.j0 + g.p - (g.ck - 1) + e % HC);
  for (int64_t e = threadIdx.x; e < taps; e += kBlock) ker[e] = K[(t.bh % H) * taps + e];
  __syncthreads();
  for (int64_t ii = ty; ii < kTI; ii += kBlock / kTJ) {
    const int64_t r = t.i0 + ii, s = t.j0 + tx;
    if (r >= g.T || s >= g.T) continue;
    acc_t<T> acc = 0;
    if (s <= r)
      for (int64_t a = 0; a < g.cq; ++a)
        for (int64_t c = 0; c < g.ck; ++c)
          acc += ker[a * g.ck + c] * halo[(ii + g.cq - 1 - a) * HC + tx + g.ck - 1 - c];
    o[r * g.T + s] = T(acc);
  }
}

template <typename T>
__global__ void gx_direct(const T* go, const T* K, T* gx, Geom g, int64_t BH, int64_t H) {
  const int64_t n = BH * g.T * g.T, taps = g.cq * g.ck;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t s = e % g.T, r = e / g.T % g.T, bh = e / (g.T * g.T);
    const T* gmap = go + bh * g.T * g.T;
    const T* ker = K + (bh % H) * taps;
    acc_t<T> acc = 0;
    if (s <= r)
      for (int64_t a = 0; a < g.cq; ++a)
        for (int64_t c = 0; c < g.ck; ++c)
          acc += ker[a * g.ck + c] * out_grad(gmap, g.T, r + g.cq - 1 - a, s + g.p - c);
    gx[e] = T(acc);
  }
}

// ---- kernel gradient -------------------------------------------------------------------
// Block u = (bh, 16-row block): partial[u][tap] = sum over outputs (i, j <= i) of the
// block's rows of gout[i, j] x~[i - (cq-1) + a, j - p + c]. The threads form `groups`
// groups of `per` threads; thread (grp, k) sums taps k, k + per, ... over the tile rows
// grp, grp + groups, ...; the groups' sums are added in group order.
template <typename T>
__global__ void gk_tiled(const T* x, const T* go, double* partial, Geom g, int groups) {
  MTALAB_DYNAMIC_SMEM(unsigned char, raw);
  const int64_t HR = kTI + g.cq - 1, HC = kTJ + g.ck - 1, taps = g.cq * g.ck;
  const int64_t u = blockIdx.x, bh = u / g.tiles_i, i0 = u % g.tiles_i * kTI;
  T* halo = reinterpret_cast<T*>(raw);  // [HR][HC] x~
  T* gt = halo + HR * HC;                // [kTI][kTJ] gout~
  double* acc = reinterpret_cast<double*>(raw + ceil_div((HR * HC + kTI * kTJ) * (int64_t)sizeof(T), 8) * 8);  // [groups][taps]
  const int per = kBlock / groups, grp = threadIdx.x / per, k0 = threadIdx.x % per;
  const T* map = x + bh * g.T * g.T;
  const T* gmap = go + bh * g.T * g.T;
  for (int64_t e = threadIdx.x; e < groups * taps; e += kBlock) acc[e] = 0;
  for (int64_t j0 = 0; j0 <= dev::min(g.T - 1, i0 + kTI - 1); j0 += kTJ) {  // tiles touching the causal region
    __syncthreads();  // the previous tile's reads are done
    for (int64_t e = threadIdx.x; e < HR * HC; e += kBlock)
      halo[e] = masked(map, g.T, i0 - (g.cq - 1) + e / HC, j0 - g.p + e % HC);
    for (int64_t e = threadIdx.x; e < kTI * kTJ; e += kBlock) gt[e] = out_grad(gmap, g.T, i0 + e / kTJ, j0 + e % kTJ);
    __syncthreads();
    if (grp < groups)
      for (int64_t tap = k0; tap < taps; tap += per) {
        const int64_t a = tap / g.ck, c = tap % g.ck;
        acc_t<T> s = 0;
        for (int64_t ii = grp; ii < kTI; ii += groups)
          for (int64_t jj = 0; jj < kTJ; ++jj) s += gt[ii * kTJ + jj] * halo[(ii + a) * HC + jj + c];
        acc[grp * taps + tap] += (double)s;
      }
  }
  __syncthreads();
  for (int64_t tap = threadIdx.x; tap < taps; tap += kBlock) {
    double s = 0;
    for (int q = 0; q < groups; ++q) s += acc[q * taps + tap];
    partial[u * taps + tap] = s;
  }
}

// One thread per (unit, tap) reading global memory: kernels too large to stage.
template <typename T>
__global__ void gk_direct(const T* x, const T* go, double* partial, Geom g, int64_t units) {
  const int64_t taps = g.cq * g.ck;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < units * taps;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t u = e / taps, tap = e % taps, a = tap / g.ck, c = tap % g.ck;
    const int64_t bh = u / g.tiles_i, i0 = u % g.tiles_i * kTI;
    const T* map = x + bh * g.T * g.T;
    const T* gmap = go + bh * g.T * g.T;
    double s = 0;
    for (int64_t i = i0; i < dev::min(g.T, i0 + kTI); ++i) {
      acc_t<T> row = 0;
      for (int64_t j = 0; j <= i; ++j) row += gmap[i * g.T + j] * masked(map, g.T, i - (g.cq - 1) + a, j - g.p + c);
      s += (double)row;
    }
    partial[e] = s;
  }
}

// gK[h, tap] = sum over b, then row blocks, of partial[(b H + h) blocks + blk][tap].
template <typename T>
__global__ void gk_total(const double* partial, T* gk, int64_t B, int64_t H, int64_t blocks, int64_t taps) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < H * taps; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t h = e / taps, tap = e % taps;
    double s = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t blk = 0; blk < blocks; ++blk) s += partial[((b * H + h) * blocks + blk) * taps + tap];
    gk[e] = (T)s;
  }
}

Geom geom(const Tensor& x, const Tensor& k, int64_t p) {
  const int64_t T = x.size(2);
  return {T, k.size(1), k.size(2), p, ceil_div(T, kTI), ceil_div(T, kTJ)};
}
template <typename T>
size_t stage_bytes(const Geom& g) {
  return (size_t)((kTI + g.cq - 1) * (kTJ + g.ck - 1) + g.cq * g.ck) * sizeof(T);
}
// Thread groups for the kernel gradient: as many as fit 256 threads with a thread per tap,
// and their accumulators beside the staged tiles.
template <typename T>
int gk_groups(const Geom& g, size_t& smem) {
  const int64_t taps = g.cq * g.ck;
  const size_t tiles = (size_t)ceil_div(((kTI + g.cq - 1) * (kTJ + g.ck - 1) + kTI * kTJ) * (int64_t)sizeof(T), 8) * 8;
  int groups = (int)std::clamp<int64_t>(kBlock / std::max<int64_t>(taps, 1), 1, kTI);
  while (groups > 1 && (kBlock % groups || tiles + (size_t)groups * taps * 8 > kSmemLimit)) --groups;
  smem = tiles + (size_t)groups * taps * 8;
  return smem <= kSmemLimit ? groups : 0;
}

template <typename T>
void kq_conv_typed(const Tensor& xt, const Tensor& kt, int64_t p, const Tensor& ot) {
  const Geom g = geom(xt, kt, p);
  const int64_t BH = xt.size(0) * xt.size(1), H = xt.size(1);
  const size_t smem = stage_bytes<T>(g);
  if (smem <= kSmemLimit)
    launch("kq_conv", fwd_tiled<T>, (unsigned)(BH * g.tiles_i * g.tiles_j), kBlock, smem, ptr<const T>(xt),
           ptr<const T>(kt), ptr<T>(ot), g, H);
  else
    launch("kq_conv_direct", fwd_direct<T>, grid_for(BH * g.T * g.T), kThreads, 0, ptr<const T>(xt), ptr<const T>(kt),
           ptr<T>(ot), g, BH, H);
}

template <typename T>
void kq_conv_bwd_typed(const Tensor& xt, const Tensor& kt, int64_t p, const Tensor& got, const Tensor& gxt,
                       const Tensor& gkt) {
  const Geom g = geom(xt, kt, p);
  const int64_t B = xt.size(0), H = xt.size(1), BH = B * H, taps = g.cq * g.ck;
  if (gxt.defined()) {
    const size_t smem = stage_bytes<T>(g);
    if (smem <= kSmemLimit)
      launch("kq_conv_backward_input", gx_tiled<T>, (unsigned)(BH * g.tiles_i * g.tiles_j), kBlock, smem,
             ptr<const T>(got), ptr<const T>(kt), ptr<T>(gxt), g, H);
    else
      launch("kq_conv_backward_input_direct", gx_direct<T>, grid_for(BH * g.T * g.T), kThreads, 0, ptr<const T>(got),
             ptr<const T>(kt), ptr<T>(gxt), g, BH, H);
  }
  if (!gkt.defined()) return;
  const int64_t units = BH * g.tiles_i;
  Tensor partial = Tensor::empty({units, taps}, {DType::f64, xt.device()});
  size_t smem = 0;
  const int groups = gk_groups<T>(g, smem);
  if (groups > 0)
    launch("kq_conv_backward_kernel", gk_tiled<T>, (unsigned)units, kBlock, smem, ptr<const T>(xt), ptr<const T>(got),
           ptr<double>(partial), g, groups);
  else
    launch("kq_conv_backward_kernel_direct", gk_direct<T>, grid_for(units * taps), kThreads, 0, ptr<const T>(xt),
           ptr<const T>(got), ptr<double>(partial), g, units);
  launch("kq_conv_backward_kernel_total", gk_total<T>, grid_for(H * taps), kThreads, 0, ptr<const double>(partial),
         ptr<T>(gkt), B, H, g.tiles_i, taps);
}

void kq_conv(const Tensor& x, const Tensor& kernel, int64_t pad_left, const Tensor& out) {
  MTALAB_DISPATCH_FLOATING(x.dtype(), "kq_conv", [&] { kq_conv_typed<scalar_t>(x, kernel, pad_left, out); });
}
void kq_conv_bwd(const Tensor& x, const Tensor& kernel, int64_t pad_left, const Tensor& gout, const Tensor& gx,
                 const Tensor& gkernel) {
  MTALAB_DISPATCH_FLOATING(x.dtype(), "kq_conv_backward",
                        [&] { kq_conv_bwd_typed<scalar_t>(x, kernel, pad_left, gout, gx, gkernel); });
}

}  // namespace

MTALAB_REGISTER_KERNEL(kq_conv_kernel, cuda, kq_conv);
MTALAB_REGISTER_KERNEL(kq_conv_bwd_kernel, cuda, kq_conv_bwd);

}  // namespace mtalab::cuda
