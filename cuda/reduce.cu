// CUDA sum and max over one dim of a contiguous tensor viewed as [outer, r, inner].
// inner == 1 (rows): a warp per short row, a 256-thread block per long row. inner > 1
// (columns): a thread per (outer, inner) column walking r. A long r is cut into fixed
// chunks whose partial results a second pass combines in order. Sums accumulate in
// double (as the CPU's do), max propagates NaN; every order is fixed by the shape.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

template <typename A, bool Sum>
__device__ __forceinline__ A combine(A a, A b) {
  if constexpr (Sum) return a + b;
  else return max_nan(a, b);
}
template <typename A, bool Sum>
__device__ __forceinline__ A identity() {
  if constexpr (Sum) return A(0);
  else return -dev::inf<A>();
}
template <typename A, bool Sum>
__device__ __forceinline__ A warp_combine(A v) {
  if constexpr (Sum) return warp_sum(v);
  else return warp_max(v);
}

// One warp per row: rows [rows], each split into `splits` chunks of `chunk` elements;
// out[row * splits + split].
template <typename S, typename A, typename D, bool Sum>
__global__ void rows_warp(const S* x, D* out, int64_t rows, int64_t r, int64_t chunk, int splits) {
  const int64_t task = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  if (task >= rows * splits) return;  // the whole warp leaves together
  const int64_t row = task / splits, split = task % splits;
  const int64_t b = split * chunk, e = dev::min(r, b + chunk);
  A acc = identity<A, Sum>();
  for (int64_t q = b + threadIdx.x % 32; q < e; q += 32) acc = combine<A, Sum>(acc, (A)x[row * r + q]);
  acc = warp_combine<A, Sum>(acc);
  if (threadIdx.x % 32 == 0) out[task] = (D)acc;
}

// One block per (row, split), for long rows.
template <typename S, typename A, typename D, bool Sum>
__global__ void rows_block(const S* x, D* out, int64_t r, int64_t chunk, int splits) {
  __shared__ A part[32];
  const int64_t row = blockIdx.x, split = blockIdx.y;
  const int64_t b = split * chunk, e = dev::min(r, b + chunk);
  A acc = identity<A, Sum>();
  for (int64_t q = b + threadIdx.x; q < e; q += blockDim.x) acc = combine<A, Sum>(acc, (A)x[row * r + q]);
  acc = warp_combine<A, Sum>(acc);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) part[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    acc = lane < (int)(blockDim.x / 32) ? part[lane] : identity<A, Sum>();
    acc = warp_combine<A, Sum>(acc);
    if (lane == 0) out[row * splits + split] = (D)acc;
  }
}

// One thread per column (o, j) of [outer, r, inner] and chunk of r: out[split][o*inner + j].
template <typename S, typename A, typename D, bool Sum>
__global__ void cols(const S* x, D* out, int64_t outer, int64_t r, int64_t inner, int64_t chunk) {
  const int64_t ncols = outer * inner, split = blockIdx.y;
  const int64_t b = split * chunk, e = dev::min(r, b + chunk);
  for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < ncols; c += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = c / inner, j = c % inner;
    const S* base = x + o * r * inner + j;
    A acc = identity<A, Sum>();
    for (int64_t q = b; q < e; ++q) acc = combine<A, Sum>(acc, (A)base[q * inner]);
    out[split * ncols + c] = (D)acc;
  }
}

constexpr int kWarpsPerBlock = 8;

template <typename S, typename A, typename D, bool Sum>
void reduce_rows(const S* x, D* out, int64_t rows, int64_t r, int splits) {
  const int64_t chunk = (r + splits - 1) / splits;
  if (chunk <= 1024) {
    launch("reduce_rows", rows_warp<S, A, D, Sum>, grid_for_rows(rows * splits, kWarpsPerBlock), 32 * kWarpsPerBlock,
           0, x, out, rows, r, chunk, splits);
  } else {
    launch("reduce_rows", rows_block<S, A, D, Sum>, dim3((unsigned)rows, (unsigned)splits), kThreads, 0, x, out, r,
           chunk, splits);
  }
}

template <typename T, bool Sum>
void reduce_typed(const Tensor& xt, int64_t dim, const Tensor& ot) {
  using A = std::conditional_t<Sum, double, acc_t<T>>;  // bfloat16 max in float: exact
  const Shape& s = xt.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= s[d];
  for (int64_t d = dim + 1; d < (int64_t)s.size(); ++d) inner *= s[d];
  const int64_t r = s[dim], ncols = outer * inner;
  const T* x = ptr<const T>(xt);
  T* o = ptr<T>(ot);
  if (!ncols) return;
  // Few outputs over a long r: split r into chunks so enough threads work at once.
  const int splits = (int)std::clamp<int64_t>(ncols < 1024 ? r / 8192 : 1, 1, 1024);
  Tensor part = splits > 1 ? Tensor::empty({splits, ncols}, {sizeof(A) == 8 ? DType::f64 : DType::f32, xt.device()})
                           : Tensor();
  if (inner == 1) {
    if (splits == 1) return reduce_rows<T, A, T, Sum>(x, o, outer, r, 1);
    reduce_rows<T, A, A, Sum>(x, ptr<A>(part), outer, r, splits);  // part [outer, splits]
    return reduce_rows<A, A, T, Sum>(ptr<const A>(part), o, outer, splits, 1);
  }
  const int64_t chunk = (r + splits - 1) / splits;
  if (splits == 1) {
    launch("reduce_cols", cols<T, A, T, Sum>, grid_for(ncols), kThreads, 0, x, o, outer, r, inner, chunk);
    return;
  }
  launch("reduce_cols", cols<T, A, A, Sum>, dim3(grid_for(ncols), (unsigned)splits), kThreads, 0, x, ptr<A>(part),
         outer, r, inner, chunk);  // part [splits, ncols]
  launch("reduce_cols", cols<A, A, T, Sum>, grid_for(ncols), kThreads, 0, ptr<const A>(part), o, (int64_t)1,
         (int64_t)splits, ncols, (int64_t)splits);
}

void reduce(ReduceKind k, const Tensor& x, int64_t dim, const Tensor& out) {
  if (!x.is_contiguous()) throw std::logic_error("reduce kernel: input must be contiguous");
  MTALAB_DISPATCH_FLOATING(x.dtype(), "reduce", [&] {
    if (k == ReduceKind::sum) reduce_typed<scalar_t, true>(x, dim, out);
    else reduce_typed<scalar_t, false>(x, dim, out);
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(reduce_kernel, cuda, reduce);

}  // namespace mtalab::cuda
