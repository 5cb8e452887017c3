// Random tensors: a Generator reserves counters, the device's random kernel fills them
// (autograd/cpu/random.cpp, cuda/random.cu), both from autograd/philox.h.
#include "autograd/random.h"

#include "autograd/philox.h"

namespace mtalab {

uint64_t Generator::next_u64() {
  uint32_t o[4];
  philox::philox4x32(st_.seed, st_.counter++, o);
  return ((uint64_t)o[0] << 32) | o[1];
}

namespace {
Tensor draw(RandomKind k, const Shape& s, double a, double b, Generator& g, TensorOptions o) {
  if (!is_floating(o.dtype))
    throw std::invalid_argument(std::string("random: expected a float32 or float64 tensor, got ") + dtype_name(o.dtype));
  Tensor t = Tensor::empty(s, {o.dtype, o.device});
  random_kernel(o.device)(k, t, g.take(t.numel()), a, b);
  if (o.requires_grad) t.set_requires_grad(true);
  return t;
}
}  // namespace

Tensor rand(const Shape& s, Generator& g, TensorOptions o) { return draw(RandomKind::uniform, s, 0, 1, g, o); }
Tensor uniform(const Shape& s, double lo, double hi, Generator& g, TensorOptions o) {
  return draw(RandomKind::uniform, s, lo, hi, g, o);
}
Tensor randn(const Shape& s, Generator& g, TensorOptions o) { return draw(RandomKind::normal, s, 0, 1, g, o); }
Tensor normal(const Shape& s, double mean, double std, Generator& g, TensorOptions o) {
  return draw(RandomKind::normal, s, mean, std, g, o);
}
Tensor trunc_normal(const Shape& s, double std, double bound, Generator& g, TensorOptions o) {
  return draw(RandomKind::trunc_normal, s, std, bound, g, o);
}

}  // namespace mtalab
