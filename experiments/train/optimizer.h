// Optimizers and learning-rate schedules.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace mtalab {

using NamedParams = std::vector<std::pair<std::string, Tensor>>;

struct OptimizerConfig {
  std::string name = "adamw";  // adamw | sgd
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.0;  // decoupled; applied to 2-D ".weight" matrices only
  double momentum = 0.0;      // sgd
};

class Optimizer {
 public:
  Optimizer(NamedParams params, OptimizerConfig cfg);
  void step(double lr);  // uses each parameter's .grad; skips parameters without one
  int64_t steps() const { return t_; }
  // State for checkpoints: named tensors ("<param>.exp_avg", ...) and the step count.
  NamedParams state() const;
  void load_state(const NamedParams& state, int64_t steps);  // InputError on a mismatch
  static bool decays(const std::string& name, const Tensor& p);
  // ZeRO-1: keep the state of, and step, only the parameters marked true (this rank's
  // shard); state() then holds only theirs. The others' parameters arrive from their owners.
  void shard(const std::vector<bool>& owned);

 private:
  NamedParams params_;
  OptimizerConfig cfg_;
  std::vector<Tensor> m_, v_;  // adamw moments, or sgd momentum buffers in m_
  int64_t t_ = 0;
  std::vector<bool> owned_;  // empty: every parameter
};

struct ScheduleConfig {
  std::string kind = "cosine";  // constant | linear | cosine
  double lr = 1e-3;
  double min_lr = 0.0;  // the floor reached at the last step (linear, cosine)
  int64_t warmup = 0;
  int64_t total = 1;
};
// Learning rate at 0-based `step`: linear warmup from lr/warmup to lr over `warmup`
// steps, then the schedule's decay from lr to min_lr at step total-1.
double learning_rate(const ScheduleConfig& s, int64_t step);

// Scales all gradients so their global L2 norm is at most max_norm (if max_norm > 0).
// Returns the norm before clipping (NaN/inf if any gradient is not finite).
double clip_grad_norm(const NamedParams& params, double max_norm);

}  // namespace mtalab
