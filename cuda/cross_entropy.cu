// CUDA cross-entropy per row of [N, V] logits: a warp per row for the log-sum-exp (sum in
// double, as on the CPU), a thread per element for the gradient.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

constexpr int kWarps = 8;

// T is the logits' storage type, A = acc_t<T> the arithmetic type and the type of the
// per-row loss, lse and scale (float32 for bfloat16 logits: the loss stays float32).
template <typename T, typename I, typename A = acc_t<T>>
__global__ void ce_rows(const T* logits, const I* tgt, A* loss, A* lse, int64_t N, int64_t V) {
  const int64_t i = blockIdx.x * (int64_t)kWarps + threadIdx.x / 32;
  if (i >= N) return;
  const int lane = threadIdx.x % 32;
  const T* row = logits + i * V;
  A m = -dev::inf<A>();
  for (int64_t j = lane; j < V; j += 32) m = (A)row[j] > m ? (A)row[j] : m;
  for (int o = 16; o > 0; o >>= 1) {
    const A other = __shfl_xor_sync(0xffffffffu, m, o);
    m = other > m ? other : m;
  }
  double s = 0;
  for (int64_t j = lane; j < V; j += 32) s += (double)dev::exp((A)row[j] - m);
  s = warp_sum(s);
  if (lane == 0) {
    const A l = m + (A)::log(s);
    const int64_t t = (int64_t)tgt[i];
    lse[i] = l;
    // A target outside the vocabulary cannot throw here: the loss says so by being NaN.
    loss[i] = t >= 0 && t < V ? l - (A)row[t] : (A)NAN;
  }
}

// glogits[n, :] = scale[n] (softmax(logits[n]) - onehot(target[n])); 0 where scale is 0.
template <typename T, typename I, typename A = acc_t<T>>
__global__ void ce_bwd(const T* logits, const I* tgt, const A* lse, const A* scale, T* g, int64_t N, int64_t V) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < N * V; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / V, j = e % V;
    const A s = scale[i];
    if (s == A(0)) {
      g[e] = T(A(0));
      continue;
    }
    A v = s * dev::exp((A)logits[e] - lse[i]);
    if ((int64_t)tgt[i] == j) v -= s;
    g[e] = T(v);
  }
}

void cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& lse) {
  MTALAB_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", [&] {
    MTALAB_DISPATCH_INDEX(target.dtype(), "cross_entropy", [&] {
      using A = acc_t<scalar_t>;
      const int64_t V = logits.size(-1), N = target.numel();
      launch("cross_entropy", ce_rows<scalar_t, index_t>, grid_for_rows(N, kWarps), 32 * kWarps, 0,
             ptr<const scalar_t>(logits), ptr<const index_t>(target), ptr<A>(loss), ptr<A>(lse), N, V);
    });
  });
}

void cross_entropy_bwd(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& scale,
                       const Tensor& g) {
  MTALAB_DISPATCH_FLOATING(logits.dtype(), "cross_entropy_backward", [&] {
    MTALAB_DISPATCH_INDEX(target.dtype(), "cross_entropy_backward", [&] {
      using A = acc_t<scalar_t>;
      const int64_t V = logits.size(-1), N = target.numel();
      launch("cross_entropy_backward", ce_bwd<scalar_t, index_t>, grid_for(N * V), kThreads, 0,
             ptr<const scalar_t>(logits), ptr<const index_t>(target), ptr<const A>(lse), ptr<const A>(scale),
             ptr<scalar_t>(g), N, V);
    });
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(cross_entropy_kernel, cuda, cross_entropy);
MTALAB_REGISTER_KERNEL(cross_entropy_bwd_kernel, cuda, cross_entropy_bwd);

}  // namespace mtalab::cuda
