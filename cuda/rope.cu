// CUDA rotary position embedding (autograd/kernels.h), one thread per pair of x, reading x
// through its strides. Reference (the CPU's loop, autograd/cpu/rope.cpp):
//   for each row r = (b, h, t), pair i:  (y0, y1) = (x0 c - x1 s, x0 s + x1 c),  s -> -s if inverse
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

// T is the storage type, A = acc_t<T> the arithmetic one (bfloat16 rotated in float32, rounded once).
template <typename T, typename A = acc_t<T>>
__global__ void rope_pairs(const T* x, const T* cs, const T* sn, T* out, int64_t n, int64_t H, int64_t T_,
                           int64_t half, int64_t sb, int64_t sh, int64_t st, A sign) {
  for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < n; p += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = p % half, r = p / half, t = r % T_, h = r / T_ % H, b = r / T_ / H;
    const T* xr = x + b * sb + h * sh + t * st;
    const A x0 = (A)xr[2 * i], x1 = (A)xr[2 * i + 1], c = (A)cs[t * half + i], s = sign * (A)sn[t * half + i];
    out[2 * p] = T(x0 * c - x1 * s);
    out[2 * p + 1] = T(x0 * s + x1 * c);
  }
}

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& out) {
  if (x.dim() != 4 || x.strides()[3] != 1 || !cos.is_contiguous() || !sin.is_contiguous() || !out.is_contiguous())
    throw std::logic_error("rope kernel: x must be 4-D with a contiguous last dim, cos, sin and out contiguous");
  MTALAB_DISPATCH_FLOATING(x.dtype(), "rope", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const int64_t half = x.size(3) / 2, n = x.size(0) * x.size(1) * x.size(2) * half;
    launch("rope", rope_pairs<T>, grid_for(n), kThreads, 0, ptr<const T>(x), ptr<const T>(cos), ptr<const T>(sin),
           ptr<T>(out), n, x.size(1), x.size(2), half, x.strides()[0], x.strides()[1], x.strides()[2],
           inverse ? A(-1) : A(1));
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(rope_kernel, cuda, rope);

}  // namespace mtalab::cuda
