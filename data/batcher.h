// Batches of byte windows for language-model training and evaluation.
// A window is a non-overlapping run of seq_len+1 bytes starting at k*(seq_len+1): its first
// seq_len bytes are the inputs and its last seq_len the targets (inputs shifted by one), so
// every target byte is predicted exactly once per epoch and no two windows share a byte.
#pragma once
#include <cstdint>
#include <vector>

#include "data/rng.h"

namespace mtalab {

// inputs and targets are int32 [batch_size * seq_len], row-major (one window per row).
struct TokenBatch {
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;
};

// Where a training stream stands; save it in a checkpoint and set it back to resume bit for bit.
struct BatcherState {
  uint64_t seed = 0;
  int64_t epoch = 0;  // completed passes over all windows
  int64_t index = 0;  // position in this epoch's visiting order, in [0, num_windows)
  bool operator==(const BatcherState& o) const {
    return seed == o.seed && epoch == o.epoch && index == o.index;
  }
};

// Endless training stream. Each epoch visits every window once, in a Fisher–Yates order
// drawn from Rng(derive_seed(seed, epoch)) so the order changes every epoch, or in file
// order when shuffle is false. Batches run across epoch boundaries without a gap.
class WindowBatcher {
 public:
  // Throws InputError if seq_len < 1 or data holds no full window.
  WindowBatcher(std::vector<uint8_t> data, int64_t seq_len, uint64_t seed, bool shuffle = true);

  int64_t seq_len() const { return seq_len_; }
  int64_t num_windows() const { return n_windows_; }
  bool shuffled() const { return shuffle_; }

  // The next batch_size windows (batch_size >= 1, else InputError); advances the state.
  TokenBatch next_batch(int64_t batch_size);

  BatcherState state() const { return st_; }
  // Throws InputError if epoch < 0 or index is outside [0, num_windows).
  void set_state(const BatcherState& s);

  // Window numbers in the order epoch `epoch` visits them (a permutation of 0..num_windows-1).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  std::vector<uint8_t> data_;
  int64_t seq_len_;
  int64_t n_windows_;
  bool shuffle_;
  BatcherState st_;
  std::vector<int64_t> order_;  // epoch_order(st_.epoch), cached
};

// One pass over a validation split in file order: non-overlapping windows, the final partial
// window dropped. Every batch is full except possibly the last.
class EvalBatches {
 public:
  // Throws InputError if seq_len < 1, batch_size < 1 or data holds no full window.
  EvalBatches(std::vector<uint8_t> data, int64_t seq_len, int64_t batch_size);

  int64_t num_windows() const { return n_windows_; }
  int64_t num_batches() const { return (n_windows_ + batch_size_ - 1) / batch_size_; }

  // Writes the next batch into out and returns true, or returns false once the split is done.
  bool next(TokenBatch& out);
  void reset() { next_window_ = 0; }

 private:
  std::vector<uint8_t> data_;
  int64_t seq_len_;
  int64_t batch_size_;
  int64_t n_windows_;
  int64_t next_window_ = 0;
};

// Bits per byte from the mean loss in nats per byte-token: nats / ln 2.
double bits_per_byte(double mean_nats_per_token);

}  // namespace mtalab
