// CUDA embedding lookup and its gradient.
//
// The gradient gweight[v] = sum of gout[i] over tokens i with idx[i] = v must add in
// increasing i to be deterministic (and equal to the CPU's sums), so no float atomics:
// the tokens are counting-sorted by id, stably, and each (v, column) thread then sums its
// run in token order. The sort: integer counts per chunk of tokens (integer atomics give
// the same counts whatever the order), an exclusive scan in (id, chunk) order, and each
// token's rank among the same ids earlier in its chunk.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

template <typename T, typename I>
__global__ void embedding_fwd(const T* w, const I* idx, T* out, int64_t n, int64_t V, int64_t d) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n * d; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / d, c = e % d, v = (int64_t)idx[i];
    // An id outside the table cannot throw here: NaN makes the loss say so.
    out[e] = v >= 0 && v < V ? w[v * d + c] : T(NAN);
  }
}

template <typename I>
__global__ void count_ids(const I* idx, int32_t* counts, int64_t n, int64_t V, int64_t chunk) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t v = (int64_t)idx[i];
    if (v >= 0 && v < V) atomicAdd(&counts[(i / chunk) * V + v], 1);
  }
}

// One thread per id v: counts[c][v] becomes the number of v-tokens in chunks before c,
// and totals[v] the number of v-tokens in all.
__global__ void scan_chunks(int32_t* counts, int32_t* totals, int64_t chunks, int64_t V) {
  for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < V; v += (int64_t)gridDim.x * blockDim.x) {
    int32_t run = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      const int32_t k = counts[c * V + v];
      counts[c * V + v] = run;
      run += k;
    }
    totals[v] = run;
  }
}

// One block: start[v] = sum of totals[v' < v], start[V] = n. Each thread scans a
// contiguous span; thread 0 scans the span sums.
__global__ void scan_ids(const int32_t* totals, int32_t* start, int64_t V) {
  __shared__ int32_t span_sum[1024];
  const int64_t t = threadIdx.x, per = (V + blockDim.x - 1) / blockDim.x;
  const int64_t b = dev::min(V, t * per), e = dev::min(V, b + per);
  int32_t s = 0;
  for (int64_t v = b; v < e; ++v) s += totals[v];
  span_sum[t] = s;
  __syncthreads();
  if (t == 0) {
    int32_t run = 0;
    for (int64_t k = 0; k < (int64_t)blockDim.x; ++k) {
      const int32_t x = span_sum[k];
      span_sum[k] = run;
      run += x;
    }
    start[V] = run;
  }
  __syncthreads();
  int32_t run = span_sum[t];
  for (int64_t v = b; v < e; ++v) {
    start[v] = run;
    run += totals[v];
  }
}

template <typename I>
__global__ void place_tokens(const I* idx, const int32_t* before, const int32_t* start, int32_t* order, int64_t n,
                             int64_t V, int64_t chunk) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const I v = idx[i];
    if (v < 0 || (int64_t)v >= V) continue;
    const int64_t c = i / chunk;
    int32_t rank = 0;
    for (int64_t j = c * chunk; j < i; ++j) rank += idx[j] == v;
    order[start[v] + before[c * V + v] + rank] = (int32_t)i;
  }
}

template <typename T>
__global__ void sum_runs(const T* g, const int32_t* order, const int32_t* start, T* gw, int64_t V, int64_t d) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < V * d; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t v = e / d, c = e % d;
    acc_t<T> acc = 0;  // bfloat16 gradients sum in float32, rounded once
    for (int32_t p = start[v]; p < start[v + 1]; ++p) acc += (acc_t<T>)g[(int64_t)order[p] * d + c];
    gw[e] = T(acc);
  }
}

void embedding(const Tensor& w, const Tensor& idx, const Tensor& out) {
  MTALAB_DISPATCH_FLOATING(w.dtype(), "embedding", [&] {
    MTALAB_DISPATCH_INDEX(idx.dtype(), "embedding", [&] {
      const int64_t V = w.size(0), d = w.size(1), n = idx.numel();
      launch("embedding", embedding_fwd<scalar_t, index_t>, grid_for(n * d), kThreads, 0, ptr<const scalar_t>(w),
             ptr<const index_t>(idx), ptr<scalar_t>(out), n, V, d);
    });
  });
}

void embedding_bwd(const Tensor& g, const Tensor& idx, const Tensor& gw) {
  MTALAB_DISPATCH_FLOATING(gw.dtype(), "embedding_backward", [&] {
    MTALAB_DISPATCH_INDEX(idx.dtype(), "embedding_backward", [&] {
      using T = scalar_t;
      using I = index_t;
      const int64_t V = gw.size(0), d = gw.size(1), n = idx.numel();
      if (n >= INT32_MAX) throw std::invalid_argument("embedding_backward on cuda: more than 2^31 tokens");
      // Chunks of at least 256 tokens, and at most ~16M counters in all.
      const int64_t chunk = std::max<int64_t>(256, (n * V + (1 << 24) - 1) >> 24);
      const int64_t chunks = std::max<int64_t>(1, (n + chunk - 1) / chunk);
      const Device dev = gw.device();
      Tensor counts = zeros({chunks, V}, {DType::i32, dev}), totals = Tensor::empty({V}, {DType::i32, dev});
      Tensor start = Tensor::empty({V + 1}, {DType::i32, dev}), order = Tensor::empty({std::max<int64_t>(n, 1)}, {DType::i32, dev});
      const I* ip = ptr<const I>(idx);
      launch("embedding_backward_count", count_ids<I>, grid_for(n), kThreads, 0, ip, ptr<int32_t>(counts), n, V, chunk);
      launch("embedding_backward_scan", scan_chunks, grid_for(V), kThreads, 0, ptr<int32_t>(counts),
             ptr<int32_t>(totals), chunks, V);
      launch("embedding_backward_scan", scan_ids, 1, 1024, 0, ptr<const int32_t>(totals), ptr<int32_t>(start), V);
      launch("embedding_backward_place", place_tokens<I>, grid_for(n), kThreads, 0, ip, ptr<const int32_t>(counts),
             ptr<const int32_t>(start), ptr<int32_t>(order), n, V, chunk);
      launch("embedding_backward_sum", sum_runs<T>, grid_for(V * d), kThreads, 0, ptr<const T>(g),
             ptr<const int32_t>(order), ptr<const int32_t>(start), ptr<T>(gw), V, d);
    });
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(embedding_kernel, cuda, embedding);
MTALAB_REGISTER_KERNEL(embedding_bwd_kernel, cuda, embedding_bwd);

}  // namespace mtalab::cuda
