#include "layers/rope.h"

#include <cmath>

namespace mtalab {

Rope::Rope(int64_t head_dim, int64_t max_len, double theta, DType dtype) : head_dim_(head_dim), max_len_(max_len) {
  if (head_dim % 2) throw std::invalid_argument("rope: head_dim must be even, got " + std::to_string(head_dim));
  const int64_t half = head_dim / 2;
  std::vector<double> c(max_len * half), s(max_len * half);
  for (int64_t t = 0; t < max_len; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double ang = (double)t * std::pow(theta, -2.0 * (double)i / (double)head_dim);
      c[t * half + i] = std::cos(ang);
      s[t * half + i] = std::sin(ang);
    }
  cos_ = from_vector(c, {max_len, half}, {dtype});
  sin_ = from_vector(s, {max_len, half}, {dtype});
}

void Rope::to(Device d) {
  cos_ = cos_.to(d);
  sin_ = sin_.to(d);
}

Tensor Rope::apply(const Tensor& x, int64_t start) const {
  const int64_t T = x.size(-2), D = x.size(-1);
  if (D != head_dim_ || start < 0 || start + T > max_len_)
    throw std::invalid_argument("rope: input " + shape_str(x.shape()) + " at position " + std::to_string(start) +
                                " needs head_dim " + std::to_string(head_dim_) + " and at most " +
                                std::to_string(max_len_) + " positions");
  Tensor c = slice(cos_, 0, start, start + T), s = slice(sin_, 0, start, start + T);
  if (c.dtype() != x.dtype()) c = to_dtype(c, x.dtype()), s = to_dtype(s, x.dtype());
  return rotary_embedding(x, c, s);  // one kernel pass, reading split heads in place
}

}  // namespace mtalab
