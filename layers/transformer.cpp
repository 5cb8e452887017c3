#include "layers/transformer.h"

#include <cmath>

#include "autograd/autocast.h"
#include "autograd/errors.h"

namespace mtalab {

int64_t ModelConfig::ffn_hidden_size() const {
  if (ffn_hidden > 0) return ffn_hidden;
  const int64_t h = (8 * d_model + 2) / 3;  // ceil(8d/3)
  return (h + 63) / 64 * 64;
}

static double init_std_of(const ModelConfig& c) {
  return c.init_std > 0 ? c.init_std : 1.0 / std::sqrt((double)c.d_model);
}

RMSNorm::RMSNorm(int64_t dim, double eps, DType dtype) : eps_(eps) {
  weight_ = register_parameter("weight", ones({dim}, {dtype}));
}

FeedForward::FeedForward(int64_t d, int64_t hidden, double std, DType dtype, Generator& g) {
  w1_ = register_parameter("w1.weight", trunc_normal({hidden, d}, std, 3.0, g, {dtype}));
  w2_ = register_parameter("w2.weight", trunc_normal({d, hidden}, std, 3.0, g, {dtype}));
  w3_ = register_parameter("w3.weight", trunc_normal({hidden, d}, std, 3.0, g, {dtype}));
}

Block::Block(const ModelConfig& c, int layer) : dropout_(c.dropout) {
  // Each layer draws its initial weights from its own stream: adding a layer or a
  // variant's parameter never shifts another layer's initialisation.
  Generator g(c.seed * 1000003ull + 1000 + (uint64_t)layer);
  attn_norm_ = register_module("attention_norm", std::make_shared<RMSNorm>(c.d_model, c.norm_eps, c.dtype));
  AttentionConfig ac;
  ac.d_model = c.d_model;
  ac.n_heads = c.n_heads;
  ac.layer = layer;
  ac.n_layers = (int)c.n_layers;
  ac.dropout = c.dropout;
  ac.impl = c.attn_impl;
  ac.init_std = c.init_std;
  ac.dtype = c.dtype;
  ac.seed = g.next_u64();
  const auto& variant = AttentionRegistry::get(c.attention);
  OptionValues opts = c.attention_options.prefix() == variant.name ? c.attention_options
                                                                    : AttentionRegistry::options_for(variant.name);
  attention_ = register_module("attention", variant.make(ac, opts));
  ffn_norm_ = register_module("ffn_norm", std::make_shared<RMSNorm>(c.d_model, c.norm_eps, c.dtype));
  ffn_ = register_module("feed_forward",
                         std::make_shared<FeedForward>(c.d_model, c.ffn_hidden_size(), init_std_of(c), c.dtype, g));
}

Tensor Block::forward(const Tensor& x, const Rope& rope, Generator& dropout_gen) {
  Tensor h = add(x, attention_->forward(attn_norm_->forward(x), rope, dropout_gen));
  return add(h, dropout(ffn_->forward(ffn_norm_->forward(h)), dropout_, dropout_gen, training()));
}

Tensor Block::decode(const Tensor& x, const Rope& rope, LayerCache& cache) {
  Tensor h = add(x, attention_->decode(attn_norm_->forward(x), rope, cache));
  cache.pos += x.size(1);
  return add(h, ffn_->forward(ffn_norm_->forward(h)));
}

Transformer::Transformer(const ModelConfig& c) : cfg_(c) {
  if (c.d_model % c.n_heads)
    throw InputError("model: d_model=" + std::to_string(c.d_model) + " is not divisible by n_heads=" +
                     std::to_string(c.n_heads));
  if ((c.d_model / c.n_heads) % 2)
    throw InputError("model: head dim d_model/n_heads=" + std::to_string(c.d_model / c.n_heads) +
                     " must be even for RoPE");
  if (c.precision == DType::bf16 && c.dtype != DType::f32)
    throw InputError(std::string("model: mixed precision (bf16) keeps float32 master weights; got dtype ") +
                     dtype_name(c.dtype) + ", expected float32");
  Generator g(c.seed * 1000003ull + 7);
  const double std = init_std_of(c);
  tok_embeddings_ = register_parameter("tok_embeddings.weight", trunc_normal({c.vocab_size, c.d_model}, std, 3.0, g, {c.dtype}));
  rope_ = Rope(c.d_model / c.n_heads, c.max_seq_len, c.rope_theta, c.dtype);
  for (int l = 0; l < c.n_layers; ++l)
    blocks_.push_back(register_module("layers." + std::to_string(l), std::make_shared<Block>(c, l)));
  norm_ = register_module("norm", std::make_shared<RMSNorm>(c.d_model, c.norm_eps, c.dtype));
  if (!c.tie_embeddings)
    output_ = register_parameter("output.weight", trunc_normal({c.vocab_size, c.d_model}, std, 3.0, g, {c.dtype}));
}

Tensor Transformer::forward(const Tensor& tokens, Generator& dropout_gen) {
  if (tokens.dim() != 2)
    throw std::invalid_argument("transformer: tokens must be [B, T], got " + shape_str(tokens.shape()));
  if (tokens.size(1) > cfg_.max_seq_len)
    throw std::invalid_argument("transformer: sequence length " + std::to_string(tokens.size(1)) +
                                " exceeds max_seq_len " + std::to_string(cfg_.max_seq_len));
  AutocastGuard mixed(cfg_.precision);
  Tensor x = embedding(tok_embeddings_, tokens);
  for (auto& b : blocks_) x = b->forward(x, rope_, dropout_gen);
  x = norm_->forward(x);
  return linear(x, output_.defined() ? output_ : tok_embeddings_);
}

Tensor Transformer::decode(const Tensor& tokens, DecodeCache& cache) {
  if (tokens.dim() != 2 || tokens.size(1) < 1)
    throw std::invalid_argument("transformer: decode tokens must be [B, T] with T >= 1, got " + shape_str(tokens.shape()));
  const int64_t Tn = tokens.size(1);
  if (cache.pos + Tn > cfg_.max_seq_len)
    throw std::invalid_argument("transformer: decoding to position " + std::to_string(cache.pos + Tn) +
                                " exceeds max_seq_len " + std::to_string(cfg_.max_seq_len));
  if (cache.pos > 0 && Tn > 1) {  // variants decode a prompt or one token at a time
    TensorList rows;
    for (int64_t t = 0; t < Tn; ++t) rows.push_back(decode(slice(tokens, 1, t, t + 1), cache));
    return concat(rows, 1);
  }
  NoGradGuard ng;
  AutocastGuard mixed(cfg_.precision);
  train(false);
  cache.layers.resize(blocks_.size());
  Tensor x = embedding(tok_embeddings_, tokens);
  for (size_t l = 0; l < blocks_.size(); ++l) x = blocks_[l]->decode(x, rope_, cache.layers[l]);
  cache.pos += Tn;
  return linear(norm_->forward(x), output_.defined() ? output_ : tok_embeddings_);
}

void Transformer::to(Device d) {
  Module::to(d);
  rope_.to(d);
}

std::vector<std::string> Transformer::kernel_names() const {
  std::vector<std::string> r;
  for (size_t l = 0; l < blocks_.size(); ++l)
    for (auto& n : blocks_[l]->attention().kernel_names()) r.push_back("layers." + std::to_string(l) + ".attention." + n);
  return r;
}

}  // namespace mtalab
