// Deterministic, counter-based random numbers for the data pipeline. A draw is a pure
// function of (seed, counter): value = splitmix64 stream started at splitmix64(seed),
// read at position `counter`. Because the whole state is two integers in a plain struct,
// a data stream can be checkpointed and resumed bit for bit, and it never depends on the
// tensor engine's generator (autograd/random.h), so data and model randomness stay apart.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace mtalab {

// The splitmix64 output function (Steele, Lea & Flood 2014): a strong 64-bit mixer.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// An independent seed for sub-stream `salt` of `seed` (an epoch, an example index, a split).
inline uint64_t derive_seed(uint64_t seed, uint64_t salt) {
  return splitmix64(splitmix64(seed) ^ splitmix64(salt ^ 0xD1B54A32D192ED03ull));
}

struct RngState {
  uint64_t seed = 0;
  uint64_t counter = 0;  // number of 64-bit values drawn so far
  bool operator==(const RngState& o) const { return seed == o.seed && counter == o.counter; }
};

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { st_.seed = seed; }
  explicit Rng(RngState s) : st_(s) {}
  RngState state() const { return st_; }
  void set_state(RngState s) { st_ = s; }

  uint64_t next_u64() {
    return splitmix64(splitmix64(st_.seed) + st_.counter++ * 0x9E3779B97F4A7C15ull);
  }
  // Uniform in [0, n), n > 0, without modulo bias: reject draws below 2^64 mod n.
  uint64_t below(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;
    for (;;) {
      const uint64_t r = next_u64();
      if (r >= threshold) return r % n;
    }
  }

 private:
  RngState st_;
};

// Fisher–Yates: every permutation of v equally likely.
template <class T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

}  // namespace mtalab
