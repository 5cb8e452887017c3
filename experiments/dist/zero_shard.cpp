#include "experiments/dist/zero_shard.h"

#include <cmath>
#include <cstring>
#include <map>

#include "autograd/ops.h"
#include "experiments/dist/communicator.h"
#include "experiments/dist/ordered_sum.h"

namespace mtalab::dist {

std::vector<int> shard_owners(const std::vector<Tensor>& params, int ranks) {
  double total = 0, before = 0;
  for (const Tensor& p : params) total += (double)p.numel();
  std::vector<int> owner;
  for (const Tensor& p : params) {
    const double mid = before + (double)p.numel() / 2;
    owner.push_back(std::min(ranks - 1, (int)(mid * ranks / std::max(total, 1.0))));
    before += (double)p.numel();
  }
  return owner;
}

namespace {
std::string packed(const std::vector<Tensor>& ts) {
  std::vector<char> out;
  pack_grads(out, ts);
  return std::string(out.begin(), out.end());
}
}  // namespace

double clip_grad_norm_sharded(const std::vector<Tensor>& params, const std::vector<int>& owner, double max_norm,
                              int64_t step) {
  NoGradGuard ng;
  // Per owned parameter: [uint8 defined][double sum of squares], in parameter order.
  std::string mine;
  for (size_t i = 0; i < params.size(); ++i) {
    if (owner[i] != rank()) continue;
    const Tensor g = params[i].grad();
    const double s = g.defined() ? sum(square(to_dtype(g, DType::f64))).item() : 0.0;
    mine.push_back(g.defined() ? 1 : 0);
    mine.append((const char*)&s, sizeof s);
  }
  const std::string what = "the gradient norm of step " + std::to_string(step);
  const auto all = allgather(mine, what.c_str());
  std::vector<size_t> at(all.size(), 0);
  bool any = false;
  double total = 0;  // clip_grad_norm's order: parameter by parameter, from the first defined one
  for (size_t i = 0; i < params.size(); ++i) {
    const size_t q = (size_t)owner[i];
    if (at[q] + 1 + sizeof(double) > all[q].size())
      throw CommError("rank " + std::to_string(q) + ": a short message while exchanging " + what);
    const bool defined = all[q][at[q]] != 0;
    double s;
    std::memcpy(&s, all[q].data() + at[q] + 1, sizeof s);
    at[q] += 1 + sizeof(double);
    if (!defined) continue;
    total = any ? total + s : s;
    any = true;
  }
  const double norm = any ? std::sqrt(total) : 0.0;
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (size_t i = 0; i < params.size(); ++i)
      if (owner[i] == rank() && params[i].grad().defined()) {
        Tensor g = params[i].grad();
        copy_(g, mul(g, scale));
      }
  }
  return norm;
}

void gather_parameters(const std::vector<Tensor>& params, const std::vector<int>& owner, int64_t step) {
  NoGradGuard ng;
  std::vector<std::vector<Tensor>> of(size());  // each rank's parameters, in order
  for (size_t i = 0; i < params.size(); ++i) of[(size_t)owner[i]].push_back(params[i]);
  const std::string what = "the parameters of step " + std::to_string(step);
  const auto all = allgather(packed(of[(size_t)rank()]), what.c_str());
  for (int q = 0; q < size(); ++q) {
    if (q == rank()) continue;
    size_t at = 0;
    const auto values = unpack_grads(all[(size_t)q].data(), all[(size_t)q].size(), at, of[(size_t)q], what.c_str());
    for (size_t k = 0; k < values.size(); ++k) copy_(of[(size_t)q][k], values[k]);
  }
}

std::vector<std::pair<std::string, Tensor>> gather_state(const std::vector<std::pair<std::string, Tensor>>& mine,
                                                         const std::vector<std::pair<std::string, Tensor>>& params) {
  std::map<std::string, Tensor> param_by_name(params.begin(), params.end());
  std::string names;
  std::vector<Tensor> tensors;
  for (auto& [n, t] : mine) {
    names += n + "\n";
    tensors.push_back(t);
  }
  const auto all_names = allgather(names, "the optimizer state's names");
  const auto all_values = allgather(packed(tensors), "the optimizer state");
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t q = 0; q < all_names.size(); ++q) {
    std::vector<std::string> ns;
    std::vector<Tensor> templates;
    for (size_t at = 0, nl; (nl = all_names[q].find('\n', at)) != std::string::npos; at = nl + 1) {
      ns.push_back(all_names[q].substr(at, nl - at));
      const std::string param = ns.back().substr(0, ns.back().rfind('.'));  // "<param>.exp_avg"
      auto it = param_by_name.find(param);
      if (it == param_by_name.end())
        throw CommError("rank " + std::to_string(q) + " sent optimizer state '" + ns.back() + "' of no parameter");
      templates.push_back(it->second);
    }
    size_t at = 0;
    const auto values = unpack_grads(all_values[q].data(), all_values[q].size(), at, templates, "the optimizer state");
    for (size_t k = 0; k < ns.size(); ++k) out.emplace_back(ns[k], values[k]);
  }
  return out;
}

}  // namespace mtalab::dist
