// `mta`: Multi-Token Attention (Golovneva, Wang, Weston, Sukhbaatar 2025, arXiv 2504.00927),
// and `talking_heads` (Shazeer et al. 2020), which is MTA's head mixing alone.
//
// One layer, in order (the paper's §3 and its reference code):
//   S = QKᵀ/√Dh → [kq-conv pre] → [head-mix pre] → Mask_−∞ + softmax
//     → [kq-conv post (+ Mask_0)] → [head-mix post] → dropout → ·V
//     → [group norm (+ depth scaling)] → [gate] → merge heads → W_o
// kq_conv and head_mix (autograd/ops_attention.h) are causal: they read only entries
// j ≤ i and write 0 at j > i, which is Mask_0 before the convolution (§3.1, eq. 4) and
// Mask_0 after a post-softmax convolution (eq. 5); causal_softmax applies Mask_−∞.
#include <cmath>
#include <sstream>

#include "autograd/errors.h"
#include "layers/attention.h"
#include "layers/mta_init.h"

namespace mtalab {
namespace {

// The values of the registered options below (their defaults are stated there only).
struct MtaOptions {
  bool kq_pre, kq_post;
  int64_t cq, ck, cq_post, ck_post;
  KqPad pad;
  std::string kq_layers;
  bool mix_pre, mix_post;
  int64_t ch;  // 0: all heads
  bool group_norm, depth_scale, gate;
  std::string init;
};

// "all", "none", "every:K+R" (0-based layers R, R+K, R+2K, ...: l % K == R), "every:K"
// (the K-th, 2K-th, ... layers counting from 1, i.e. every:K+(K-1)), or a comma list of
// 0-based layers such as "2,6,10". The default, every:4+2, is the reference code's
// placement (l % 4 == 2: layers 3, 7, 11, ... counting from 1, as in the paper's figures).
bool layer_selected(const std::string& spec, int layer, int n_layers, const std::string& opt) {
  if (spec == "all") return true;
  if (spec == "none") return false;
  if (spec.rfind("every:", 0) == 0) {
    const std::string body = spec.substr(6);
    const size_t plus = body.find('+');
    int k = 0, r = -1;
    size_t used_k = 0, used_r = 0;
    try {
      k = std::stoi(body.substr(0, plus), &used_k);
      r = plus == std::string::npos ? k - 1 : std::stoi(body.substr(plus + 1), &used_r);
    } catch (...) {
      k = 0;
    }
    const bool whole = used_k == body.substr(0, plus).size() &&
                       (plus == std::string::npos || used_r == body.size() - plus - 1);
    if (k < 1 || !whole || r < 0 || r >= k)
      throw InputError("option --" + opt + ": '" + spec +
                       "' is not every:K or every:K+R (expected a positive K and 0 <= R < K, e.g. every:4+2)");
    return layer % k == r;
  }
  std::stringstream ss(spec);
  std::string item;
  bool hit = false;
  while (std::getline(ss, item, ',')) {
    size_t pos = 0;
    int l = -1;
    try {
      l = std::stoi(item, &pos);
    } catch (...) {
    }
    if (l < 0 || pos != item.size() || l >= n_layers)
      throw InputError("option --" + opt + ": '" + item + "' is not a layer index in [0, " +
                       std::to_string(n_layers) + ") (expected all, none, every:K+R, every:K or a list like 0,2)");
    hit |= l == layer;
  }
  return hit;
}

class MtaAttention final : public Attention {
 public:
  MtaAttention(const AttentionConfig& c, const MtaOptions& o, const std::string& prefix) : Attention(c), o_(o) {
    const int64_t H = c.n_heads;
    const int64_t ch = o.ch == 0 ? H : o.ch;
    if (H % ch)
      throw InputError("option --" + prefix + ".ch=" + std::to_string(o.ch) + " does not divide n_heads=" +
                       std::to_string(H));
    if (o.pad == KqPad::both && ((o.kq_pre && o.ck % 2 == 0) || (o.kq_post && o.ck_post % 2 == 0)))
      throw InputError("option --" + prefix + ".pad=both needs an odd key kernel size, got --" + prefix +
                       (o.kq_pre && o.ck % 2 == 0 ? ".ck=" + std::to_string(o.ck)
                                                  : ".ck_post=" + std::to_string(o.ck_post)));
    const bool kq_here = layer_selected(o.kq_layers, c.layer, c.n_layers, prefix + ".kq_layers");
    const TensorOptions opts{c.dtype};
    if (kq_here && o.kq_pre) kq_pre_ = register_parameter("kq_kernel", init_kernel(kq_identity_kernel(H, o.cq, o.ck, o.pad, opts)));
    if (kq_here && o.kq_post)
      kq_post_ = register_parameter("kq_kernel_post", init_kernel(kq_identity_kernel(H, o.cq_post, o.ck_post, o.pad, opts)));
    if (o.mix_pre) mix_pre_ = register_parameter("head_kernel_pre", init_kernel(head_mix_identity(H, ch, opts)));
    if (o.mix_post) mix_post_ = register_parameter("head_kernel_post", init_kernel(head_mix_identity(H, ch, opts)));
    if (o.group_norm) subln_ = register_parameter("subln.weight", ones({c.head_dim()}, opts));
    if (o.gate) {
      // w = 0, b = 0: every token starts with the same gate σ(0) = ½, and learns its own.
      gate_w_ = register_parameter("gate.weight", zeros({c.head_dim()}, opts));
      gate_b_ = register_parameter("gate.bias", zeros({1}, opts));
    }
    scale_ = o.depth_scale ? 1.0 - lambda_init(c.layer) : 1.0;
  }

  Tensor forward(const Tensor& x, const Rope& rope, Generator& g) override {
    Tensor q, k, v;
    project_qkv(x, rope, q, k, v);
    // The paper's order: scores -> kq-conv pre -> head-mix pre -> causal softmax ->
    // kq-conv post -> head-mix post -> .V, fused (no [T, T] maps) or through the map ops.
    const MtaMaps maps{kq_pre_, mix_pre_, kq_post_, mix_post_, o_.pad};
    return finish(attend(q, k, v, 1.0 / std::sqrt((double)cfg_.head_dim()), maps, g));  // [B, H, T, Dh] in
  }

  // Generation. A prompt goes through the map ops, keeping the rows that the next token's
  // convolutions read: the last c_q − 1 score rows under Mask_0 (the input of eq. 4) and the
  // last c_q,post − 1 probability rows (the input of eq. 5). A new token's row is then
  // convolved with those rows alone — O(T·c_q·c_k) per head, not the whole map.
  Tensor decode(const Tensor& x, const Rope& rope, LayerCache& c) override {
    Tensor q, k, v;
    project_qkv_cached(x, rope, c, q, k, v);
    Tensor s = mul(matmul(q, transpose(k, -1, -2)), 1.0 / std::sqrt((double)cfg_.head_dim()));
    const bool prompt = c.pos == 0;
    if (kq_pre_.defined()) s = prompt ? conv_prompt(s, kq_pre_, c, "s_rows", true) : conv_step(s, kq_pre_, c, "s_rows");
    if (mix_pre_.defined()) s = prompt ? head_mix(s, mix_pre_) : head_mix_rows(s, mix_pre_);
    Tensor p = decode_softmax(s);
    if (kq_post_.defined()) p = prompt ? conv_prompt(p, kq_post_, c, "p_rows", false) : conv_step(p, kq_post_, c, "p_rows");
    if (mix_post_.defined()) p = prompt ? head_mix(p, mix_post_) : head_mix_rows(p, mix_post_);
    return finish(matmul(p, v));
  }

  std::vector<std::string> kernel_names() const override {
    std::vector<std::string> r;
    for (auto& [n, t] : named_parameters())
      if (n.find("kernel") != std::string::npos) r.push_back(n);
    return r;
  }

 private:
  // Group norm (+ depth scaling) and the gate on the heads' outputs o [B, H, T, Dh], then W_o.
  Tensor finish(Tensor o) {
    if (subln_.defined()) {
      o = rms_norm(o, subln_, 1e-5);
      if (scale_ != 1.0) o = mul(o, scale_);
    }
    if (gate_w_.defined()) o = mul(o, sigmoid(add(sum(mul(o, gate_w_), {-1}, true), gate_b_)));
    return output(o);
  }
  // A prompt's whole map through kq_conv; its last c_q − 1 input rows go to cache[name]
  // (Mask_0 applied to scores; probabilities are already 0 above the diagonal).
  Tensor conv_prompt(const Tensor& maps, const Tensor& kernel, LayerCache& c, const std::string& name, bool mask) {
    const int64_t keep = kernel.size(1) - 1;
    if (keep > 0) c[name] = mask ? last_rows_masked(maps, keep) : last_rows(maps, keep);
    return kq_conv(maps, kernel, o_.pad);
  }
  // One new row [B, H, 1, L]: the cached rows, widened by the new key (0 there, Mask_0),
  // then the row; the cache keeps the newest c_q − 1 of them.
  Tensor conv_step(const Tensor& row, const Tensor& kernel, LayerCache& c, const std::string& name) {
    if (kernel.size(1) == 1) return kq_conv_last_row(row, kernel, o_.pad);
    Tensor rows = concat({widen_rows(c[name]), row}, 2);
    c[name] = last_rows(rows, kernel.size(1) - 1);
    return kq_conv_last_row(rows, kernel, o_.pad);
  }
  // identity: the kernels start as the identity map, so the layer starts as softmax
  // attention. constant: every entry 1/size (a mean filter). uniform: U(±1/√size).
  Tensor init_kernel(const Tensor& identity) {
    if (o_.init == "identity") return identity;
    const int64_t per = identity.numel() / identity.size(0);
    if (o_.init == "constant") return full(identity.shape(), 1.0 / (double)per, identity.options());
    const double a = 1.0 / std::sqrt((double)per);
    return uniform(identity.shape(), -a, a, init_gen_, identity.options());
  }

  MtaOptions o_;
  Tensor kq_pre_, kq_post_, mix_pre_, mix_post_, subln_, gate_w_, gate_b_;
  double scale_ = 1.0;
};

MtaOptions read_mta(const OptionValues& v) {
  MtaOptions o;
  o.kq_pre = v.get_bool("kq_pre");
  o.kq_post = v.get_bool("kq_post");
  o.cq = v.get_int("cq");
  o.ck = v.get_int("ck");
  o.cq_post = v.get_int("cq_post");
  o.ck_post = v.get_int("ck_post");
  o.pad = parse_kq_pad(v.get_string("pad"));
  o.kq_layers = v.get_string("kq_layers");
  o.mix_pre = v.get_bool("head_mix_pre");
  o.mix_post = v.get_bool("head_mix_post");
  o.ch = v.get_int("ch");
  o.group_norm = v.get_bool("group_norm");
  o.depth_scale = v.get_bool("depth_scale");
  o.gate = v.get_bool("gate");
  o.init = v.get_string("init");
  if (o.depth_scale && !o.group_norm)
    throw InputError("option --mta.depth_scale=true needs --mta.group_norm=true (it scales the group-normed output)");
  return o;
}

// The 0-based layers that get a key-query convolution.
std::vector<int> kq_layers_of(const MtaOptions& o, int n_layers, const std::string& prefix) {
  std::vector<int> r;
  if (o.kq_pre || o.kq_post)
    for (int l = 0; l < n_layers; ++l)
      if (layer_selected(o.kq_layers, l, n_layers, prefix + ".kq_layers")) r.push_back(l);
  return r;
}

std::vector<IdleOption> mta_idle_options(const OptionValues& a) {
  const bool pre = a.get_bool("kq_pre"), post = a.get_bool("kq_post");
  std::vector<IdleOption> r;
  for (const char* o : {"cq", "ck"}) r.push_back({o, !pre, "--mta.kq_pre is false"});
  for (const char* o : {"cq_post", "ck_post"}) r.push_back({o, !post, "--mta.kq_post is false"});
  for (const char* o : {"pad", "kq_layers"}) r.push_back({o, !pre && !post, "--mta.kq_pre and --mta.kq_post are both false"});
  r.push_back({"ch", !a.get_bool("head_mix_pre") && !a.get_bool("head_mix_post"),
               "--mta.head_mix_pre and --mta.head_mix_post are both false"});
  return r;
}

// A convolution switched on whose --mta.kq_layers selects no layer of the model (e.g.
// every:4+2 with 2 layers) would make an "MTA" run without any.
void mta_check_model(const AttentionConfig& c, const OptionValues& a) {
  const MtaOptions o = read_mta(a);
  if (!(o.kq_pre || o.kq_post) || o.kq_layers == "none" || !kq_layers_of(o, c.n_layers, "mta").empty()) return;
  throw InputError("option --mta.kq_layers=" + o.kq_layers + (a.is_default("kq_layers") ? " (the default)" : "") +
                   " selects no layer of this " + std::to_string(c.n_layers) +
                   "-layer model, so it would have no key-query convolution; expected --mta.kq_layers all, a 0-based "
                   "list such as 0,1, or none with --mta.kq_pre false --mta.kq_post false");
}

std::string mta_describe_model(const AttentionConfig& c, const OptionValues& a) {
  const MtaOptions o = read_mta(a);
  std::string list;
  for (int l : kq_layers_of(o, c.n_layers, "mta")) list += (list.empty() ? "" : ", ") + std::to_string(l);
  return "For this " + std::to_string(c.n_layers) + "-layer model, --mta.kq_layers " + o.kq_layers +
         " puts MTA's key-query convolution in 0-based layers: " + (list.empty() ? "none" : list);
}

// What keeps an MTA layer from being softmax attention at initialisation: its kernels at
// identity are (layers/mta_init.h: kq-conv is Mask_0, head mixing the identity), but group
// norm RMS-normalises each head's output (softmax's output has no unit RMS) and the gate
// starts at σ(0) = ½, halving every head's output.
std::string mta_differs_from_softmax(const OptionValues& a) {
  std::string r;
  auto add = [&](const std::string& s) { r += (r.empty() ? "" : "; ") + s; };
  const bool kernels = a.get_bool("kq_pre") || a.get_bool("kq_post") || a.get_bool("head_mix_pre") ||
                       a.get_bool("head_mix_post");
  if (kernels && a.get_string("init") != "identity")
    add("--mta.init=" + a.get_string("init") + " starts the kernels away from the identity");
  if (a.get_bool("group_norm")) add("--mta.group_norm RMS-normalises each head's output");
  if (a.get_bool("gate")) add("--mta.gate starts at sigmoid(0) = 1/2, halving each head's output");
  return r;
}

// Defaults: the paper's language-model setting (§4.2): 6×11 kq-conv before and after
// softmax in every 4th layer (0-based 2, 6, 10, ..., as the reference code places it),
// head mixing before and after softmax over all heads in every layer, group norm with
// scalar gating. The toy setting (§4.1) is --mta.kq_layers=all --mta.cq=2 --mta.ck=9
// --mta.kq_post=false --mta.head_mix_pre=false --mta.head_mix_post=false
// --mta.group_norm=false --mta.gate=false.
const std::vector<OptionSpec> kMtaOptions = {
    OptionSpec::Bool("kq_pre", true, "key-query convolution on scores, before softmax"),
    OptionSpec::Bool("kq_post", true, "key-query convolution on probabilities, after softmax"),
    OptionSpec::Int("cq", 6, "pre-softmax kernel size over queries (looks back cq-1 queries)", 1, 256),
    OptionSpec::Int("ck", 11, "pre-softmax kernel size over keys", 1, 1025),
    OptionSpec::Int("cq_post", 6, "post-softmax kernel size over queries", 1, 256),
    OptionSpec::Int("ck_post", 11, "post-softmax kernel size over keys", 1, 1025),
    OptionSpec::String("pad", "both", "key padding: both sides, left (past keys) or right", {"both", "left", "right"}),
    OptionSpec::String("kq_layers", "every:4+2",
                       "layers with kq-conv: all, none, every:K+R (0-based R, R+K, R+2K, ...; every:4+2 is the "
                       "paper's 2, 6, 10, ...), every:K (K-th, 2K-th, ... counting from 1) or a 0-based list 2,6,10"),
    OptionSpec::Bool("head_mix_pre", true, "mix heads' scores before softmax"),
    OptionSpec::Bool("head_mix_post", true, "mix heads' probabilities after softmax"),
    OptionSpec::Int("ch", 0, "heads per mixing group (0: all heads)", 0, 4096),
    OptionSpec::Bool("group_norm", true, "RMS-normalise each head's output"),
    OptionSpec::Bool("depth_scale", false, "scale group-normed output by 1 - lambda_init(layer)"),
    OptionSpec::Bool("gate", true, "scalar gate sigmoid(w.o + b) on each head's output"),
    OptionSpec::String("init", "identity", "kernel initialisation", {"identity", "constant", "uniform"}),
};

AttentionVariant mta_variant() {
  AttentionVariant v{"mta", "Multi-Token Attention: key-query convolution, head mixing, group norm (arXiv 2504.00927)",
                     kMtaOptions, [](const AttentionConfig& c, const OptionValues& o) {
                       return std::make_shared<MtaAttention>(c, read_mta(o), "mta");
                     }};
  v.idle_options = mta_idle_options;
  v.check_model = mta_check_model;
  v.describe_model = mta_describe_model;
  v.differs_from_softmax_at_init = mta_differs_from_softmax;
  v.fused = true;
  v.maps_per_head = 7;  // scores, convolved, mixed, probabilities, convolved, mixed, dropout mask
  return v;
}

// Talking heads: MTA's defaults with the convolutions, group norm and gate off, and both
// head mixes over all heads.
AttentionVariant talking_heads_variant() {
  AttentionVariant v{"talking_heads", "talking-heads attention: head mixing over all heads before and after softmax", {},
                     [](const AttentionConfig& c, const OptionValues&) {
                       MtaOptions o = read_mta(OptionValues(kMtaOptions, "mta"));
                       o.kq_pre = o.kq_post = o.group_norm = o.gate = o.depth_scale = false;
                       o.mix_pre = o.mix_post = true;
                       o.ch = 0;
                       return std::make_shared<MtaAttention>(c, o, "talking_heads");
                     }};
  v.differs_from_softmax_at_init = [](const OptionValues&) { return std::string(); };  // mixing at identity
  v.fused = true;
  v.maps_per_head = 5;  // scores, mixed, probabilities, mixed, dropout mask
  return v;
}

}  // namespace

MTALAB_REGISTER_ATTENTION_VARIANT(mta, mta_variant());
MTALAB_REGISTER_ATTENTION_VARIANT(talking_heads, talking_heads_variant());

}  // namespace mtalab
