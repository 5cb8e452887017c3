// CPU rotary position embedding (autograd/kernels.h): one pass over x, reading it through
// its strides, instead of a copy, four products, a sum, a difference and a concatenation.
#include "autograd/cpu/parallel.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {

// T the storage type, A = acc_t<T> the arithmetic (bfloat16 rotated in float32, rounded once).
template <typename T, typename A = acc_t<T>>
void rope_typed(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& out) {
  const int64_t B = x.size(0), H = x.size(1), T_ = x.size(2), D = x.size(3), half = D / 2;
  const int64_t sb = x.strides()[0], sh = x.strides()[1], st = x.strides()[2];
  const T* xp = static_cast<const T*>(x.raw());
  const T* cp = static_cast<const T*>(cos.raw());
  const T* sp = static_cast<const T*>(sin.raw());
  T* op = static_cast<T*>(out.raw());
  const A sign = inverse ? A(-1) : A(1);
  parallel_for(B * H * T_, row_grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r % T_, h = r / T_ % H, b = r / T_ / H;
      const T* xr = xp + b * sb + h * sh + t * st;
      const T* cr = cp + t * half;
      const T* sr = sp + t * half;
      T* orow = op + r * D;
      for (int64_t i = 0; i < half; ++i) {
        const A x0 = (A)xr[2 * i], x1 = (A)xr[2 * i + 1], c = (A)cr[i], s = sign * (A)sr[i];
        orow[2 * i] = T(x0 * c - x1 * s);
        orow[2 * i + 1] = T(x0 * s + x1 * c);
      }
    }
  });
}

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& out) {
  if (x.dim() != 4 || x.strides()[3] != 1 || !cos.is_contiguous() || !sin.is_contiguous() || !out.is_contiguous())
    throw std::logic_error("rope kernel: x must be 4-D with a contiguous last dim, cos, sin and out contiguous");
  MTALAB_DISPATCH_FLOATING(x.dtype(), "rope", [&] { rope_typed<scalar_t>(x, cos, sin, inverse, out); });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
MTALAB_REGISTER_KERNEL(rope_kernel, cpu, cpu::rope);
}
