// A small Llama-style decoder (the model of the MTA paper's reference code):
//   h = x + Attn(RMSNorm(x));  y = h + FFN(RMSNorm(h))  per block, a final RMSNorm,
//   an output projection tied to the embedding by default.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "layers/attention.h"
#include "layers/module.h"
#include "layers/rope.h"

namespace mtalab {

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t d_model = 128;
  int64_t n_layers = 4;
  int64_t n_heads = 2;
  int64_t ffn_hidden = 0;  // 0: 8·d/3 rounded up to a multiple of 64
  int64_t max_seq_len = 1024;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  double dropout = 0.0;       // attention probabilities and FFN output
  double init_std = 0.0;      // 0: d_model^-0.5
  bool tie_embeddings = true;
  DType dtype = DType::f32;
  // bf16: mixed precision — float32 parameters, matrix products and attention from
  // bfloat16 operands (the op list: autograd/autocast.h). Needs dtype float32.
  DType precision = DType::f32;
  uint64_t seed = 0;
  std::string attention = "softmax";
  AttnImpl attn_impl = AttnImpl::auto_;  // --attn.impl
  OptionValues attention_options;  // the variant's own options

  int64_t ffn_hidden_size() const;
};

class RMSNorm final : public Module {
 public:
  RMSNorm(int64_t dim, double eps, DType dtype);
  Tensor forward(const Tensor& x) const { return rms_norm(x, weight_, eps_); }

 private:
  Tensor weight_;
  double eps_;
};

// SwiGLU: w2(silu(w1 x) ⊙ w3 x).
class FeedForward final : public Module {
 public:
  FeedForward(int64_t d, int64_t hidden, double std, DType dtype, Generator& g);
  Tensor forward(const Tensor& x) const { return linear(swiglu(linear(x, w1_), linear(x, w3_)), w2_); }

 private:
  Tensor w1_, w2_, w3_;
};

class Block final : public Module {
 public:
  Block(const ModelConfig& c, int layer);
  Tensor forward(const Tensor& x, const Rope& rope, Generator& dropout_gen);
  // Incremental decoding (see Attention::decode); advances cache.pos by the tokens in x.
  Tensor decode(const Tensor& x, const Rope& rope, LayerCache& cache);
  Attention& attention() { return *attention_; }

 private:
  std::shared_ptr<RMSNorm> attn_norm_, ffn_norm_;
  std::shared_ptr<Attention> attention_;
  std::shared_ptr<FeedForward> ffn_;
  double dropout_;
};

class Transformer final : public Module {
 public:
  explicit Transformer(const ModelConfig& c);
  // tokens: int [B, T] → logits [B, T, vocab]. dropout_gen drives dropout when training.
  Tensor forward(const Tensor& tokens, Generator& dropout_gen);
  // Incremental decoding: tokens int [B, Tn] at positions cache.pos .. cache.pos + Tn − 1
  // (a prompt when the cache is empty, else new tokens, fed one at a time) → their logits
  // [B, Tn, vocab], equal to those rows of forward() over the whole sequence (to rounding:
  // the test asks 1e-12 in float64). Evaluation mode, no gradients. std::invalid_argument
  // past max_seq_len.
  Tensor decode(const Tensor& tokens, DecodeCache& cache);
  const ModelConfig& config() const { return cfg_; }
  int64_t n_layers() const { return (int64_t)blocks_.size(); }
  Attention& attention(int64_t layer) { return blocks_.at(layer)->attention(); }
  void to(Device d) override;  // parameters and the RoPE tables
  // Names of every learned attention kernel (full dotted names), for snapshots.
  std::vector<std::string> kernel_names() const;

 private:
  ModelConfig cfg_;
  Rope rope_;
  Tensor tok_embeddings_, output_;
  std::vector<std::shared_ptr<Block>> blocks_;
  std::shared_ptr<RMSNorm> norm_;
};

}  // namespace mtalab
