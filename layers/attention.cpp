#include "layers/attention.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "autograd/errors.h"

namespace mtalab {

double lambda_init(int layer) { return 0.8 - 0.6 * std::exp(-0.3 * layer); }

AttnImpl parse_attn_impl(const std::string& s) {
  if (s == "auto") return AttnImpl::auto_;
  if (s == "fused") return AttnImpl::fused;
  if (s == "maps") return AttnImpl::maps;
  throw InputError("option --attn.impl='" + s + "' (expected auto, fused or maps)");
}
const char* attn_impl_name(AttnImpl i) {
  switch (i) {
    case AttnImpl::auto_: return "auto";
    case AttnImpl::fused: return "fused";
    case AttnImpl::maps: return "maps";
  }
  return "?";
}
bool attention_runs_fused(AttnImpl impl, double dropout, bool training, bool record_maps) {
  if (impl == AttnImpl::maps || record_maps) return false;
  return dropout == 0.0 || !training;
}

Attention::Attention(const AttentionConfig& c) : cfg_(c), init_gen_(c.seed) {
  if (c.impl == AttnImpl::fused && c.dropout > 0)
    throw InputError("option --attn.impl=fused cannot apply --model.dropout=" + std::to_string(c.dropout) +
                     " to attention probabilities (the fused kernel keeps no maps); use --attn.impl=auto or maps");
  if (c.n_heads < 1 || c.d_model % c.n_heads)
    throw InputError("attention: d_model=" + std::to_string(c.d_model) + " is not divisible by n_heads=" +
                     std::to_string(c.n_heads));
  wq_ = register_parameter("wq.weight", init_weight({c.d_model, c.d_model}));
  wk_ = register_parameter("wk.weight", init_weight({c.d_model, c.d_model}));
  wv_ = register_parameter("wv.weight", init_weight({c.d_model, c.d_model}));
  wo_ = register_parameter("wo.weight", init_weight({c.d_model, c.d_model}));
}

Tensor Attention::init_weight(const Shape& s) {
  const double std = cfg_.init_std > 0 ? cfg_.init_std : 1.0 / std::sqrt((double)cfg_.d_model);
  return trunc_normal(s, std, 3.0, init_gen_, {cfg_.dtype});
}

Tensor Attention::split_heads(const Tensor& x, int64_t heads) {
  const int64_t B = x.size(0), T = x.size(1), d = x.size(2);
  return permute(reshape(x, {B, T, heads, d / heads}), {0, 2, 1, 3});
}
Tensor Attention::merge_heads(const Tensor& x) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  return reshape(permute(x, {0, 2, 1, 3}), {B, T, H * D});
}

void Attention::project_qkv(const Tensor& x, const Rope& rope, Tensor& q, Tensor& k, Tensor& v) {
  const int64_t H = cfg_.n_heads;
  q = rope.apply(split_heads(linear(x, wq_), H));
  k = rope.apply(split_heads(linear(x, wk_), H));
  v = split_heads(linear(x, wv_), H);
}

void Attention::project_qkv_cached(const Tensor& x, const Rope& rope, LayerCache& cache, Tensor& q, Tensor& k,
                                   Tensor& v) {
  const int64_t H = cfg_.n_heads;
  q = rope.apply(split_heads(linear(x, wq_), H), cache.pos);
  k = cache["k"] = append_rows(cache["k"], rope.apply(split_heads(linear(x, wk_), H), cache.pos), 2);
  v = cache["v"] = append_rows(cache["v"], split_heads(linear(x, wv_), H), 2);
}

Tensor Attention::decode_softmax(const Tensor& s) { return s.size(2) == 1 ? softmax(s) : causal_softmax(s); }

Tensor Attention::decode(const Tensor& x, const Rope& rope, LayerCache& cache) {
  Generator unused(0);
  Tensor all = cache["x"] = append_rows(cache["x"], x, 1);
  const int64_t T = all.size(1);
  return slice(forward(all, rope, unused), 1, T - x.size(1), T);
}

Tensor Attention::output(const Tensor& heads) { return linear(merge_heads(heads), wo_); }

Tensor Attention::attn_dropout(const Tensor& p, Generator& g) { return dropout(p, cfg_.dropout, g, training()); }

void Attention::keep_maps(const Tensor& p) {
  if (record_maps) last_maps = p.detach();
}

bool Attention::use_fused() const { return attention_runs_fused(cfg_.impl, cfg_.dropout, training(), record_maps); }

Tensor Attention::attend(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const MtaMaps& m,
                         Generator& g) {
  if (use_fused()) return fused_attention(q, k, v, scale, m);
  Tensor p = attention_probs(q, k, scale, m);
  keep_maps(p);
  return matmul(attn_dropout(p, g), v);
}

// ---- registry -------------------------------------------------------------------
static std::map<std::string, AttentionVariant>& registry() {
  static std::map<std::string, AttentionVariant> r;
  return r;
}

bool AttentionRegistry::add(AttentionVariant v) {
  auto& r = registry();
  if (r.count(v.name)) throw std::logic_error("attention variant '" + v.name + "' registered twice");
  std::string name = v.name;
  r.emplace(name, std::move(v));
  return true;
}

const AttentionVariant& AttentionRegistry::get(const std::string& name) {
  auto& r = registry();
  auto it = r.find(name);
  if (it == r.end()) {
    std::string known;
    for (auto& [n, v] : r) known += (known.empty() ? "" : ", ") + n;
    throw InputError("unknown attention variant '" + name + "' (expected one of: " + known + ")");
  }
  return it->second;
}

std::vector<const AttentionVariant*> AttentionRegistry::list() {
  std::vector<const AttentionVariant*> out;
  for (auto& [n, v] : registry()) out.push_back(&v);
  return out;
}

OptionValues AttentionRegistry::options_for(const std::string& name) {
  const auto& v = get(name);
  return OptionValues(v.options, v.name);
}

std::string describe_attention_variants() {
  std::ostringstream os;
  for (const auto* v : AttentionRegistry::list()) {
    os << v->name << "\n    " << v->help << "\n";
    for (const auto& o : v->options)
      os << "    --" << v->name << "." << o.name << " <" << o.type_name() << "> (default " << o.default_value
         << ")  " << o.help << "\n";
  }
  return os.str();
}

}  // namespace mtalab
