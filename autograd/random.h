// Seeded, counter-based random numbers (Philox4x32-10, autograd/philox.h). A Generator
// is a seed plus a counter; every draw advances the counter by what it used, so a draw's
// values depend only on (seed, counter, shape), never on the thread count or device. The state is two
// integers, saved in checkpoints to resume a run bit for bit.
#pragma once
#include <cstdint>

#include "autograd/kernels.h"
#include "autograd/tensor.h"

namespace mtalab {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { st_.seed = seed; }
  PhiloxState state() const { return st_; }
  void set_state(PhiloxState s) { st_ = s; }
  // Reserves counters for n values and returns the state to draw them from.
  PhiloxState take(int64_t n) {
    PhiloxState s = st_;
    st_.counter += (uint64_t)((n + 3) / 4);
    return s;
  }
  uint64_t next_u64();  // one value from the stream, for host-side shuffles

 private:
  PhiloxState st_;
};

Tensor rand(const Shape& s, Generator& g, TensorOptions o = {});   // U[0,1)
Tensor uniform(const Shape& s, double lo, double hi, Generator& g, TensorOptions o = {});
Tensor randn(const Shape& s, Generator& g, TensorOptions o = {});  // N(0,1)
Tensor normal(const Shape& s, double mean, double std, Generator& g, TensorOptions o = {});
// N(0, std^2) truncated to [-bound*std, bound*std] (inverse-CDF, no rejection loop).
Tensor trunc_normal(const Shape& s, double std, double bound, Generator& g, TensorOptions o = {});

}  // namespace mtalab
