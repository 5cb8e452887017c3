#include "data/batcher.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "autograd/errors.h"

namespace mtalab {

namespace {

int64_t count_windows(const std::vector<uint8_t>& data, int64_t seq_len, const char* who) {
  if (seq_len < 1)
    throw InputError(std::string(who) + ": seq_len is " + std::to_string(seq_len) +
                     "; expected at least 1");
  const int64_t n = (int64_t)data.size() / (seq_len + 1);
  if (n < 1)
    throw InputError(std::string(who) + ": data holds " + std::to_string(data.size()) +
                     " bytes; need at least one window of seq_len+1 = " +
                     std::to_string(seq_len + 1) + " bytes");
  return n;
}

void require_batch_size(int64_t b) {
  if (b < 1)
    throw InputError("batch_size is " + std::to_string(b) + "; expected at least 1");
}

// Window w's inputs are bytes [w*(T+1), w*(T+1)+T), its targets the same run shifted by one.
void copy_window(const std::vector<uint8_t>& data, int64_t seq_len, int64_t w, int32_t* in,
                 int32_t* tgt) {
  const uint8_t* p = data.data() + w * (seq_len + 1);
  for (int64_t t = 0; t < seq_len; ++t) {
    in[t] = p[t];
    tgt[t] = p[t + 1];
  }
}

}  // namespace

WindowBatcher::WindowBatcher(std::vector<uint8_t> data, int64_t seq_len, uint64_t seed,
                             bool shuffle)
    : data_(std::move(data)),
      seq_len_(seq_len),
      n_windows_(count_windows(data_, seq_len, "training batcher")),
      shuffle_(shuffle) {
  st_.seed = seed;
  order_ = epoch_order(0);
}

std::vector<int64_t> WindowBatcher::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order((size_t)n_windows_);
  std::iota(order.begin(), order.end(), int64_t{0});
  if (shuffle_) {
    Rng rng(derive_seed(st_.seed, (uint64_t)epoch));
    shuffle(order, rng);
  }
  return order;
}

TokenBatch WindowBatcher::next_batch(int64_t batch_size) {
  require_batch_size(batch_size);
  TokenBatch b;
  b.batch_size = batch_size;
  b.seq_len = seq_len_;
  b.inputs.resize((size_t)(batch_size * seq_len_));
  b.targets.resize(b.inputs.size());
  for (int64_t r = 0; r < batch_size; ++r) {
    copy_window(data_, seq_len_, order_[(size_t)st_.index], &b.inputs[(size_t)(r * seq_len_)],
                &b.targets[(size_t)(r * seq_len_)]);
    if (++st_.index == n_windows_) {
      st_.index = 0;
      ++st_.epoch;
      order_ = epoch_order(st_.epoch);
    }
  }
  return b;
}

void WindowBatcher::set_state(const BatcherState& s) {
  if (s.epoch < 0)
    throw InputError("batcher state epoch is " + std::to_string(s.epoch) + "; expected >= 0");
  if (s.index < 0 || s.index >= n_windows_)
    throw InputError("batcher state index is " + std::to_string(s.index) +
                     "; expected a window position in [0, " + std::to_string(n_windows_) +
                     ") (was the checkpoint made with other data or seq_len?)");
  const bool reorder = s.seed != st_.seed || s.epoch != st_.epoch;
  st_ = s;
  if (reorder) order_ = epoch_order(st_.epoch);
}

EvalBatches::EvalBatches(std::vector<uint8_t> data, int64_t seq_len, int64_t batch_size)
    : data_(std::move(data)),
      seq_len_(seq_len),
      batch_size_(batch_size),
      n_windows_(count_windows(data_, seq_len, "evaluation batches")) {
  require_batch_size(batch_size);
}

bool EvalBatches::next(TokenBatch& out) {
  if (next_window_ >= n_windows_) return false;
  const int64_t rows = std::min(batch_size_, n_windows_ - next_window_);
  out.batch_size = rows;
  out.seq_len = seq_len_;
  out.inputs.resize((size_t)(rows * seq_len_));
  out.targets.resize(out.inputs.size());
  for (int64_t r = 0; r < rows; ++r)
    copy_window(data_, seq_len_, next_window_ + r, &out.inputs[(size_t)(r * seq_len_)],
                &out.targets[(size_t)(r * seq_len_)]);
  next_window_ += rows;
  return true;
}

double bits_per_byte(double mean_nats_per_token) { return mean_nats_per_token / std::log(2.0); }

}  // namespace mtalab
