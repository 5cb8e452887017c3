// CUDA cross-entropy per row of [N, V] logits: a warp per row for the log-sum-exp (sum in
// double, as on the CPU), a thread per element for the gradient.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

constexpr int kWarps = 8;

template <typename T, typename I>
__global__ void ce_rows(const T* logits, const I* tgt, T* loss, T* lse, int64_t N, int64_t V) {
  const int64_t i = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32;
  if (i >= N) return;
  const int lane = threadIdx.x % 32;
  const T* row = logits + i * V;
  T m = -dev::inf<T>();
  for (int64_t j = lane; j < V; j += 32) m = row[j] > m ? row[j] : m;
  for (int o = 16; o > 0; o >>= 1) {
    const T other = __shfl_xor_sync(0xffffffffu, m, o);
    m = other > m ? other : m;
  }
  double s = 0;
  for (int64_t j = lane; j < V; j += 32) s += (double)dev::exp(row[j] - m);
  s = warp_sum(s);
  if (lane == 0) {
    const T l = m + (T)::log(s);
    const int64_t t = (int64_t)tgt[i];
    lse[i] = l;
    // A target outside the vocabulary cannot throw here: the loss says so by being NaN.
    loss[i] = t >= 0 && t < V ? l - row[t] : (T)NAN;
  }
}

// glogits[n, :] = scale[n] (softmax(logits[n]) - onehot(target[n])); 0 where scale is 0.
template <typename T, typename I>
__global__ void ce_bwd(const T* logits, const I* tgt, const T* lse, const T* scale, T* g, int64_t N, int64_t V) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * V; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / V, j = e % V;
    const T s = scale[i];
    if (s == T(0)) {
      g[e] = 0;
      continue;
    }
    T v = s * dev::exp(logits[e] - lse[i]);
    if ((int64_t)tgt[i] == j) v -= s;
    g[e] = v;
  }
}

void cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& lse) {
  MTALAB_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", [&] {
    MTALAB_DISPATCH_INDEX(target.dtype(), "cross_entropy", [&] {
      const int64_t V = logits.size(-1), N = target.numel();
      launch("cross_entropy", ce_rows<scalar_t, index_t>, grid_for_rows(N, kWarps), 32 * kWarps, 0,
             ptr<const scalar_t>(logits), ptr<const index_t>(target), ptr<scalar_t>(loss), ptr<scalar_t>(lse), N, V);
    });
  });
}

void cross_entropy_bwd(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& scale,
                       const Tensor& g) {
  MTALAB_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", [&] {
    MTALAB_DISPATCH_INDEX(target.dtype(), "cross_entropy_backward", [&] {
      const int64_t V = logits.size(-1), N = target.numel();
      launch("cross_entropy_backward", ce_bwd<scalar_t, index_t>, grid_for(N * V), kThreads, 0,
             ptr<const scalar_t>(logits), ptr<const index_t>(target), ptr<const scalar_t>(lse),
             ptr<const scalar_t>(scale), ptr<scalar_t>(g), N, V);
    });
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(cross_entropy_kernel, cuda, cross_entropy);
MTALAB_REGISTER_KERNEL(cross_entropy_bwd_kernel, cuda, cross_entropy_bwd);

}  // namespace mtalab::cuda
