// Pluggable attention variants.
//
// A variant is one file under layers/ holding a class derived from Attention and one
// registration line:
//
//   MTALAB_REGISTER_ATTENTION(my_attention, "one-line help",
//       {OptionSpec::Float("temperature", 1.0, "divides the scores", 1e-3, 1e3)},
//       [](const AttentionConfig& c, const OptionValues& o) {
//         return std::make_shared<MyAttention>(c, o.get_float("temperature"));
//       });
//
// Its options appear on the command line and in config files as `--my_attention.temperature`,
// in `mtalab variants`, and in every run log, with no edit anywhere else
// (see layers/attention_example.cpp, which the tests build and run).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "layers/decode_cache.h"
#include "layers/module.h"
#include "layers/options.h"
#include "layers/rope.h"

namespace mtalab {

// --attn.impl: how attention is computed (not what: the same values up to rounding).
enum class AttnImpl { auto_, fused, maps };
AttnImpl parse_attn_impl(const std::string& s);  // "auto", "fused", "maps"; InputError naming the choices
const char* attn_impl_name(AttnImpl i);
// The one decision whether attention runs fused (no [T, T] maps): fused or auto, unless
// something needs the maps — dropout on the probabilities while training (the fused kernel
// applies none) or a snapshot of the maps for the run log. Layers and the memory estimate
// both ask this.
bool attention_runs_fused(AttnImpl impl, double dropout, bool training, bool record_maps);

struct AttentionConfig {
  int64_t d_model = 128;
  int64_t n_heads = 2;
  int layer = 0;  // 0-based
  int n_layers = 1;
  double dropout = 0.0;  // on attention probabilities
  AttnImpl impl = AttnImpl::auto_;
  double init_std = 0.0; // 0: d_model^-0.5
  DType dtype = DType::f32;
  uint64_t seed = 0;     // parameter initialisation stream for this layer
  int64_t head_dim() const { return d_model / n_heads; }
};

// λ_init = 0.8 − 0.6·exp(−0.3·l), l the 0-based layer (Diff Transformer, Ye et al. 2024);
// MTA's depth scaling multiplies group-normed outputs by (1 − λ_init).
double lambda_init(int layer);

class Attention : public Module {
 public:
  explicit Attention(const AttentionConfig& c);
  // x [B, T, d] (already normalised) → [B, T, d].
  virtual Tensor forward(const Tensor& x, const Rope& rope, Generator& dropout_gen) = 0;
  // Incremental decoding (evaluation only). x [B, Tn, d] holds the tokens at positions
  // cache.pos .. cache.pos + Tn − 1, where either cache.pos == 0 (a prompt) or Tn == 1 (one
  // new token; Transformer::decode splits longer chunks) → [B, Tn, d], the same rows as
  // forward() over the whole sequence gives (to rounding). The caller advances cache.pos.
  // This default keeps the layer's inputs and reruns forward() over all of them — right for
  // any variant, at O(T²) per token; variants override it with a key/value cache.
  virtual Tensor decode(const Tensor& x, const Rope& rope, LayerCache& cache);
  // Names (relative to this module) of the learned kernels worth snapshotting in logs.
  virtual std::vector<std::string> kernel_names() const { return {}; }

  // Whether this forward uses the fused kernel (no [T, T] maps): --attn.impl=fused or
  // auto, unless something needs the maps (record_maps for the run log's snapshot, or
  // dropout on the probabilities, which the fused kernel does not apply).
  bool use_fused() const;

  // When set, forward keeps its final attention probabilities [B, H, T, T] here.
  bool record_maps = false;
  Tensor last_maps;

 protected:
  const AttentionConfig cfg_;
  Generator init_gen_;
  Tensor wq_, wk_, wv_, wo_;  // [d, d] each, stored [out, in], no bias
  Tensor init_weight(const Shape& s);
  // [B, T, d] → [B, heads, T, d/heads] (a strided view; matmul takes it without copies).
  static Tensor split_heads(const Tensor& x, int64_t heads);
  static Tensor merge_heads(const Tensor& x);  // inverse of split_heads
  // q, k, v projections with RoPE on q and k, heads split: each [B, H, T, Dh].
  void project_qkv(const Tensor& x, const Rope& rope, Tensor& q, Tensor& k, Tensor& v);
  // project_qkv for decode: q of the new tokens; k and v of every token so far (the new ones
  // appended to cache["k"], cache["v"]), RoPE at the tokens' positions.
  void project_qkv_cached(const Tensor& x, const Rope& rope, LayerCache& cache, Tensor& q, Tensor& k, Tensor& v);
  // Softmax over a decode step's scores s [B, H, Tn, L]: causal when it is a prompt
  // (Tn == L), plain for one new token (it sees every key).
  static Tensor decode_softmax(const Tensor& s);
  Tensor output(const Tensor& heads);  // merge heads, then wo
  Tensor attn_dropout(const Tensor& p, Generator& g);
  void keep_maps(const Tensor& p);
  // Causal attention of q, k, v [B, H, T, Dh] with optional MTA components, fused or
  // through the maps (then kept when record_maps, and dropped out): [B, H, T, Dh].
  Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const MtaMaps& m, Generator& g);
};

using AttentionFactory = std::function<std::shared_ptr<Attention>(const AttentionConfig&, const OptionValues&)>;

// An option of a variant that would do nothing with the values of the others (refused
// when given explicitly: accepting it would misdescribe the run).
struct IdleOption {
  std::string option;   // the variant's option, without the variant's prefix
  bool idle;            // with these values
  std::string because;  // "--mta.kq_pre is false"
};

// Everything the rest of mtalab knows about a variant comes from here: experiments/ never
// names one. Only name, help, options and make are required.
struct AttentionVariant {
  std::string name;
  std::string help;
  std::vector<OptionSpec> options;
  AttentionFactory make;
  // Its options that are idle with these values of its options.
  std::function<std::vector<IdleOption>(const OptionValues&)> idle_options;
  // Checks against the whole model (`c` with layer 0 and the model's n_layers, n_heads,
  // d_model), before anything is written; InputError naming the option.
  std::function<void(const AttentionConfig& c, const OptionValues&)> check_model;
  // A line for `mtalab train --help` about what the options do to this model ("" for none).
  std::function<std::string(const AttentionConfig& c, const OptionValues&)> describe_model;
  // Memory shape: whether its forward can run the fused kernel (Attention::attend; then it
  // keeps no [T, T] maps), and how many [T, T] maps per head it saves for the backward
  // when it does not. A variant that computes its own maps says fused = false.
  bool fused = false;
  double maps_per_head = 3;  // scores, probabilities, the dropout mask
  // Why, with these options, it does not compute softmax attention at initialisation ("" when
  // it does). A retrofit (--init-from a softmax checkpoint) says so: its model then does not
  // start where the checkpoint stopped. Unset: softmax itself, or not known.
  std::function<std::string(const OptionValues&)> differs_from_softmax_at_init;
};

class AttentionRegistry {
 public:
  static bool add(AttentionVariant v);
  static const AttentionVariant& get(const std::string& name);  // InputError listing known names
  static std::vector<const AttentionVariant*> list();           // sorted by name
  // Fresh option values (defaults) for a variant, prefixed with its name.
  static OptionValues options_for(const std::string& name);
};

// Human-readable listing of every variant with its options and defaults.
std::string describe_attention_variants();

}  // namespace mtalab

#define MTALAB_REGISTER_ATTENTION(NAME, HELP, OPTIONS, FACTORY)              \
  static const bool mtalab_attention_registered_##NAME =                     \
      ::mtalab::AttentionRegistry::add({#NAME, HELP, OPTIONS, FACTORY})
// The same with the optional parts set on `variant` (an AttentionVariant named NAME).
#define MTALAB_REGISTER_ATTENTION_VARIANT(NAME, VARIANT) \
  static const bool mtalab_attention_registered_##NAME = ::mtalab::AttentionRegistry::add(VARIANT)
