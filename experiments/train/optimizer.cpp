#include "experiments/train/optimizer.h"

#include <cmath>

#include "autograd/errors.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"

namespace mtalab {

Optimizer::Optimizer(NamedParams params, OptimizerConfig cfg) : params_(std::move(params)), cfg_(std::move(cfg)) {
  if (cfg_.name != "adamw" && cfg_.name != "sgd")
    throw InputError("unknown optimizer '" + cfg_.name + "' (expected adamw or sgd)");
  for (auto& [n, p] : params_) {
    m_.push_back(zeros(p.shape(), p.options()));
    v_.push_back(cfg_.name == "adamw" ? zeros(p.shape(), p.options()) : Tensor());
  }
}

bool Optimizer::decays(const std::string& name, const Tensor& p) {
  // Matrices (projections, embeddings) decay; norms' gains, biases and MTA kernels,
  // which start at the identity, do not.
  const std::string suffix = ".weight";
  return p.dim() == 2 && name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void Optimizer::shard(const std::vector<bool>& owned) {
  owned_ = owned;
  for (size_t i = 0; i < params_.size(); ++i)
    if (!owned_[i]) m_[i] = v_[i] = Tensor();
}

void Optimizer::step(double lr) {
  NoGradGuard ng;
  ++t_;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!owned_.empty() && !owned_[i]) continue;
    auto& [name, p] = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    g = g.contiguous();
    const double wd = decays(name, p) ? cfg_.weight_decay : 0.0;
    if (cfg_.name == "adamw") {
      AdamWArgs a{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, wd, 1.0 - std::pow(cfg_.beta1, (double)t_),
                  1.0 - std::pow(cfg_.beta2, (double)t_)};
      adamw_kernel(p.device())(p, g, m_[i], v_[i], a);
    } else {
      // p ← p − lr·wd·p − lr·buf,  buf ← μ·buf + g
      Tensor d = g;
      if (cfg_.momentum > 0) {
        copy_(m_[i], add(mul(m_[i], cfg_.momentum), g));
        d = m_[i];
      }
      copy_(p, sub(mul(p, 1.0 - lr * wd), mul(d, lr)));
    }
  }
}

NamedParams Optimizer::state() const {
  NamedParams s;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!owned_.empty() && !owned_[i]) continue;
    s.emplace_back(params_[i].first + (cfg_.name == "adamw" ? ".exp_avg" : ".momentum"), m_[i]);
    if (v_[i].defined()) s.emplace_back(params_[i].first + ".exp_avg_sq", v_[i]);
  }
  return s;
}

void Optimizer::load_state(const NamedParams& state, int64_t steps) {
  std::map<std::string, Tensor> byname(state.begin(), state.end());
  for (auto& [name, t] : this->state()) {
    auto it = byname.find(name);
    if (it == byname.end()) throw InputError("optimizer state: missing '" + name + "' (is the checkpoint from another optimizer?)");
    if (it->second.shape() != t.shape())
      throw InputError("optimizer state: '" + name + "' has shape " + shape_str(it->second.shape()) + ", expected " +
                       shape_str(t.shape()));
    copy_(t, it->second.to(t.dtype()).to(t.device()));
  }
  t_ = steps;
}

double learning_rate(const ScheduleConfig& s, int64_t step) {
  if (step < s.warmup) return s.lr * (double)(step + 1) / (double)s.warmup;
  if (s.kind == "constant") return s.lr;
  const int64_t span = std::max<int64_t>(1, s.total - 1 - s.warmup);
  const double progress = std::min(1.0, (double)(step - s.warmup) / (double)span);
  if (s.kind == "linear") return s.min_lr + (s.lr - s.min_lr) * (1.0 - progress);
  if (s.kind == "cosine") return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  throw InputError("unknown lr schedule '" + s.kind + "' (expected constant, linear or cosine)");
}

double clip_grad_norm(const NamedParams& params, double max_norm) {
  NoGradGuard ng;
  // Summed on the parameters' device in float64; one read back for all of them.
  Tensor total;
  for (auto& [n, p] : params)
    if (p.grad().defined()) {
      Tensor s = sum(square(to_dtype(p.grad(), DType::f64)));
      total = total.defined() ? add(total, s) : s;
    }
  const double norm = total.defined() ? std::sqrt(total.item()) : 0.0;
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (auto& [n, p] : params)
      if (p.grad().defined()) {
        Tensor g = p.grad();
        copy_(g, mul(g, scale));
      }
  }
  return norm;
}

}  // namespace mtalab
