// What a training run learns from: byte-level text or the find-the-block task, behind
// one interface the trainer uses for batches, evaluation and resumable state.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "autograd/tensor.h"
#include "experiments/config.h"
#include "layers/transformer.h"

namespace mtalab {

struct Batch {
  Tensor inputs, targets;  // int32 [B, T]
  Tensor mask;             // float [B, T] (loss on answer tokens only) or undefined
  int64_t tokens = 0;      // tokens that count towards the loss
};

struct EvalResult {
  double loss = 0;    // mean nats per counted token
  double metric = 0;  // bits per byte (text) or error rate (find_block)
};

class TrainData {
 public:
  virtual ~TrainData() = default;
  virtual Batch next(int64_t batch_size) = 0;
  virtual EvalResult evaluate(Transformer& model) = 0;
  virtual std::string metric_name() const = 0;  // "bpb" or "error_rate"
  // One fixed evaluation sequence [1, T], for attention maps.
  virtual Tensor fixed_example() const = 0;
  // Position in the training stream, for checkpoints.
  virtual std::map<std::string, int64_t> state() const = 0;
  virtual void set_state(const std::map<std::string, int64_t>& s) = 0;
};

// Loads what `cfg` names; InputError for missing, empty or too-short data.
std::unique_ptr<TrainData> make_train_data(const TrainConfig& cfg);

}  // namespace mtalab
