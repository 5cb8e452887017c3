#include "experiments/train/config.h"

#include <algorithm>

#include "autograd/autocast.h"
#include "autograd/backend.h"
#include "autograd/errors.h"
#include "experiments/tasks/train_data.h"
#include "layers/attention.h"

namespace mtalab {

namespace {

std::vector<std::string> task_names() {
  std::vector<std::string> r;
  for (const auto* t : TaskRegistry::list()) r.push_back(t->name);
  return r;
}

// Every task's options, once each (two tasks may share an option only with the same spec).
std::vector<OptionSpec> task_option_specs() {
  std::vector<OptionSpec> r;
  for (const auto* t : TaskRegistry::list())
    for (const auto& o : t->options) {
      auto same = std::find_if(r.begin(), r.end(), [&](const OptionSpec& x) { return x.name == o.name; });
      if (same == r.end()) r.push_back(o);
      else if (same->type_name() != o.type_name() || same->default_value != o.default_value)
        throw std::logic_error("option " + o.name + " is declared differently by two tasks");
    }
  return r;
}

std::vector<OptionSpec> make_train_option_specs() {
  using S = OptionSpec;
  std::vector<OptionSpec> specs = {
      // the model
      S::String("model.attention", "softmax", "attention variant (see `mtalab variants`)"),
      S::Int("model.d_model", 128, "model width", 2, 1 << 16),
      S::Int("model.n_layers", 4, "number of blocks", 1, 1024),
      S::Int("model.n_heads", 2, "attention heads", 1, 4096),
      S::Int("model.ffn_hidden", 0, "SwiGLU hidden size (0: 8d/3 rounded up to a multiple of 64)", 0, 1 << 20),
      S::Float("model.norm_eps", 1e-5, "RMSNorm epsilon", 0, 1),
      S::Float("model.rope_theta", 10000, "RoPE base", 1, 1e9),
      S::Float("model.dropout", 0.0, "dropout on attention probabilities and FFN outputs", 0, 0.99),
      S::Float("model.init_std", 0.0, "std of truncated-normal init (0: d_model^-0.5)", 0, 10),
      S::Bool("model.tie_embeddings", true, "output projection shares the token embedding"),
      S::String("model.dtype", "float32", "parameter and activation dtype", {"float32", "float64"}),
      S::String("train.precision", "fp32",
                "bf16: mixed precision — float32 master weights and optimizer state, matrix products and attention "
                "from bfloat16 operands with float32 accumulation, everything else float32 (README: Precision)",
                {"fp32", "bf16"}),
      // the data
      S::String("data.task", "find_block", "what to learn (a registered task)", task_names()),
      S::String("data.path", "data/corpora/kjv.txt", "text file for data.task=text (setup.sh prepares the KJV Bible)"),
      S::String("data.val_path", "", "separate validation text (default: the last data.val_fraction of data.path)"),
      S::Float("data.val_fraction", 0.1, "share of data.path held out for validation", 0.0, 0.9),
      S::Int("data.seq_len", 256, "tokens per training window (data.task=text)", 1, 1 << 16),
      S::Bool("data.shuffle", true, "visit training windows in a seeded shuffled order (false: file order)"),
      // training
      S::Int("train.steps", 1000, "optimizer steps", 1, 1LL << 40),
      S::Int("train.batch_size", 32, "sequences per micro-batch", 1, 1 << 20),
      S::Int("train.grad_accum", 1, "micro-batches per optimizer step", 1, 1 << 16),
      S::String("train.optimizer", "adamw", "optimizer", {"adamw", "sgd"}),
      S::Float("train.lr", 1e-3, "peak learning rate", 0, 100),
      S::Float("train.min_lr", 0.0, "learning rate at the last step (linear, cosine)", 0, 100),
      S::Int("train.warmup", 0, "linear warmup steps", 0, 1LL << 40),
      S::String("train.schedule", "constant", "learning-rate schedule", {"constant", "linear", "cosine"}),
      S::Float("train.beta1", 0.9, "AdamW beta1", 0, 0.999999),
      S::Float("train.beta2", 0.999, "AdamW beta2", 0, 0.999999),
      S::Float("train.eps", 1e-8, "AdamW epsilon", 0, 1),
      S::Float("train.weight_decay", 0.0, "decoupled weight decay on 2-D weight matrices", 0, 10),
      S::Float("train.momentum", 0.0, "SGD momentum", 0, 0.999999),
      S::Float("train.grad_clip", 1.0, "clip the global gradient norm to this (0: off)", 0, 1e9),
      S::Int("train.eval_every", 250, "evaluate every N steps (and at the end)", 1, 1LL << 40),
      S::Int("train.eval_max_batches", 0, "cap on evaluation batches (0: the whole split)", 0, 1LL << 40),
      S::Int("train.eval_batch_size", 64, "sequences per evaluation batch", 1, 1 << 20),
      S::Int("train.log_every", 10, "progress line and /train row every N steps", 1, 1LL << 40),
      S::Int("train.checkpoint_every", 0, "also checkpoint every N steps (0: at evaluations and the end)", 0, 1LL << 40),
      S::Int("train.seed", 0, "seed for initialisation, data order and dropout", 0, 1LL << 62),
      S::String("train.init_from", "",
                "start from the parameters this checkpoint shares with the model, the others at their init (a "
                "retrofit; the same as --init-from, and what a sweep file sets; ignored by --resume)"),
      S::Int("train.threads", 0, "CPU threads (0: OMP_NUM_THREADS or all cores)", 0, 4096),
      S::Float("train.dist_timeout", 60.0,
               "with several ranks (mpirun/srun): seconds any one exchange may wait for another rank before the "
               "run stops with an error (a rank died or hangs)",
               0.1, 1e6),
      S::Float("train.bucket_mb", 4.0,
               "with several ranks: megabytes of gradients per bucket of the overlapped gradient sum (each bucket "
               "enters the ordered chain as soon as backward has finished its gradients)",
               1e-6, 1e6),
      S::Bool("train.overlap_reduce", true,
              "with several ranks: sum the gradients per bucket while backward runs (false: in one exchange after "
              "backward); the same bits either way"),
      S::Int("train.zero", 0,
             "with several ranks: 1 shards the optimizer state across the ranks on parameter boundaries (ZeRO-1: "
             "each rank steps its shard, then the parameters are gathered); the same bits as 0",
             0, 1),
      S::String("attn.impl", "auto",
                "attention implementation: fused (no T x T maps: FlashAttention-2 for softmax, recomputed row bands "
                "for MTA), maps (the map ops, the reference) or auto (fused unless dropout on attention "
                "probabilities needs the maps)",
                {"auto", "fused", "maps"}),
      S::String("train.device", "cpu", "where parameters, optimizer state, batches and evaluation live: cpu, cuda or cuda:N"),
      // where
      S::String("run.out", "runs/default", "run directory: run.h5 (log) and checkpoint.h5"),
  };
  const auto tasks = task_option_specs();
  auto after_data = std::find_if(specs.begin(), specs.end(), [](const OptionSpec& o) { return o.name == "data.shuffle"; });
  specs.insert(after_data + 1, tasks.begin(), tasks.end());
  return specs;
}

}  // namespace

const std::vector<OptionSpec>& train_option_specs() {
  static const std::vector<OptionSpec> specs = make_train_option_specs();
  return specs;
}

TrainConfig make_train_config(const OptionValues& v, const OptionValues& a) {
  TrainConfig c;
  ModelConfig& m = c.model;
  m.attention = v.get_string("model.attention");
  m.attention_options = a;
  m.d_model = v.get_int("model.d_model");
  m.n_layers = v.get_int("model.n_layers");
  m.n_heads = v.get_int("model.n_heads");
  m.ffn_hidden = v.get_int("model.ffn_hidden");
  m.norm_eps = v.get_float("model.norm_eps");
  m.rope_theta = v.get_float("model.rope_theta");
  m.dropout = v.get_float("model.dropout");
  m.attn_impl = parse_attn_impl(v.get_string("attn.impl"));
  m.init_std = v.get_float("model.init_std");
  m.tie_embeddings = v.get_bool("model.tie_embeddings");
  m.dtype = parse_dtype(v.get_string("model.dtype"));
  m.precision = parse_precision(v.get_string("train.precision"));
  if (m.precision == DType::bf16 && m.dtype != DType::f32)
    throw InputError("option --train.precision=bf16 keeps float32 master weights; it needs --model.dtype float32, got " +
                     v.get_string("model.dtype"));
  c.task = v.get_string("data.task");
  c.data_path = v.get_string("data.path");
  c.val_path = v.get_string("data.val_path");
  c.val_fraction = v.get_float("data.val_fraction");
  c.seq_len = v.get_int("data.seq_len");
  c.shuffle = v.get_bool("data.shuffle");
  c.options = v;
  c.steps = v.get_int("train.steps");
  c.batch_size = v.get_int("train.batch_size");
  c.grad_accum = v.get_int("train.grad_accum");
  c.optimizer.name = v.get_string("train.optimizer");
  c.optimizer.beta1 = v.get_float("train.beta1");
  c.optimizer.beta2 = v.get_float("train.beta2");
  c.optimizer.eps = v.get_float("train.eps");
  c.optimizer.weight_decay = v.get_float("train.weight_decay");
  c.optimizer.momentum = v.get_float("train.momentum");
  c.schedule.kind = v.get_string("train.schedule");
  c.schedule.lr = v.get_float("train.lr");
  c.schedule.min_lr = v.get_float("train.min_lr");
  c.schedule.warmup = v.get_int("train.warmup");
  c.schedule.total = c.steps;
  c.grad_clip = v.get_float("train.grad_clip");
  c.eval_every = v.get_int("train.eval_every");
  c.eval_max_batches = v.get_int("train.eval_max_batches");
  c.eval_batch_size = v.get_int("train.eval_batch_size");
  c.log_every = v.get_int("train.log_every");
  c.checkpoint_every = v.get_int("train.checkpoint_every");
  c.seed = (uint64_t)v.get_int("train.seed");
  c.threads = (int)v.get_int("train.threads");
  c.dist_timeout = v.get_float("train.dist_timeout");
  c.bucket_mb = v.get_float("train.bucket_mb");
  c.overlap_reduce = v.get_bool("train.overlap_reduce");
  c.zero = (int)v.get_int("train.zero");
  try {
    c.device = Device::parse(v.get_string("train.device"));
  } catch (const std::invalid_argument&) {
    throw InputError("option --train.device='" + v.get_string("train.device") + "' (expected cpu, cuda or cuda:N)");
  }
  c.out_dir = v.get_string("run.out");
  if (c.out_dir.empty()) throw InputError("option --run.out is empty; expected a run directory");
  m.seed = c.seed;

  if (m.d_model % m.n_heads)
    throw InputError("option --model.d_model=" + std::to_string(m.d_model) + " is not divisible by --model.n_heads=" +
                     std::to_string(m.n_heads));
  if ((m.d_model / m.n_heads) % 2)
    throw InputError("options --model.d_model / --model.n_heads give an odd head dim " +
                     std::to_string(m.d_model / m.n_heads) + "; RoPE needs an even one");
  if (c.schedule.min_lr > c.schedule.lr)
    throw InputError("option --train.min_lr=" + std::to_string(c.schedule.min_lr) + " exceeds --train.lr=" +
                     std::to_string(c.schedule.lr));
  if (c.schedule.warmup >= c.steps && c.schedule.warmup > 0)
    throw InputError("option --train.warmup=" + std::to_string(c.schedule.warmup) + " must be below --train.steps=" +
                     std::to_string(c.steps));
  const TaskSpec& task = TaskRegistry::get(c.task);
  if (task.check) task.check(v);
  m.max_seq_len = task.seq_len(v);
  AttentionRegistry::get(m.attention);  // an unknown variant fails here, before any file is touched
  return c;
}

void check_device_exists(const Device& d, const std::string& option) {
  if (d.is_cpu()) return;
  const int n = cuda_device_count();
  if (n == 0)
    throw InputError("option " + option + "=" + d.str() + ": there is no CUDA device here (" +
                     cuda_backend_unavailable_reason() + "); expected cpu");
  if (d.index >= n)
    throw InputError("option " + option + "=" + d.str() + ": this machine has " + std::to_string(n) + " CUDA device" +
                     (n > 1 ? "s" : "") + " (" + (n > 1 ? "cuda:0 .. cuda:" + std::to_string(n - 1) : "cuda:0") +
                     "); expected one of them or cpu");
}

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

OptionRole option_role(const std::string& n) {
  // attn.impl changes how attention is computed, not what: the same values up to rounding.
  if (n == "model.dropout" || n == "run.out" || n == "attn.impl") return OptionRole::tunable;
  if (starts_with(n, "model.")) return OptionRole::model;
  if (starts_with(n, "data.") || starts_with(n, "task.") || n == "train.seed" || n == "train.optimizer")
    return OptionRole::data;
  if (starts_with(n, "train.")) return OptionRole::tunable;
  return OptionRole::model;  // a variant's option: it shapes the attention layers
}

void check_options_take_effect(const OptionValues& v, const OptionValues& a, const std::set<std::string>& given) {
  // (option, is it idle with these values, why)
  struct Rule {
    std::string option;
    bool idle;
    std::string because;
  };
  const std::string task = v.get_string("data.task"), opt = v.get_string("train.optimizer");
  const TaskSpec& spec = TaskRegistry::get(task);
  auto declared = [&](const std::string& n) {
    return std::any_of(spec.options.begin(), spec.options.end(), [&](const OptionSpec& o) { return o.name == n; });
  };
  auto reads = [&](const std::string& n) { return std::find(spec.uses.begin(), spec.uses.end(), n) != spec.uses.end(); };
  std::vector<Rule> rules;
  for (const auto& s : train_option_specs()) {
    if (starts_with(s.name, "task."))
      rules.push_back({s.name, !declared(s.name), "--data.task is " + task + ", which has no such option"});
    if ((starts_with(s.name, "data.") && s.name != "data.task") || s.name == "train.eval_max_batches")
      rules.push_back({s.name, !reads(s.name), "--data.task is " + task + ", which does not read it"});
  }
  rules.push_back({"train.momentum", opt == "adamw", "--train.optimizer is adamw (momentum is for sgd)"});
  for (const char* o : {"train.beta1", "train.beta2", "train.eps"})
    rules.push_back({o, opt == "sgd", "--train.optimizer is sgd (beta1, beta2 and eps are for adamw)"});
  rules.push_back({"train.min_lr", v.get_string("train.schedule") == "constant", "--train.schedule is constant"});
  // The chosen variant's own options, by its own rules.
  const AttentionVariant& variant = AttentionRegistry::get(v.get_string("model.attention"));
  if (variant.idle_options)
    for (const IdleOption& o : variant.idle_options(a)) rules.push_back({variant.name + "." + o.option, o.idle, o.because});
  for (const auto& r : rules)
    if (r.idle && given.count(r.option))
      throw InputError("option --" + r.option + " has no effect because " + r.because +
                       "; expected it left out (or the option it depends on changed)");
}

AttentionConfig model_attention_config(const ModelConfig& m) {
  AttentionConfig c;
  c.d_model = m.d_model;
  c.n_heads = m.n_heads;
  c.n_layers = (int)m.n_layers;
  c.dropout = m.dropout;
  c.impl = m.attn_impl;
  c.dtype = m.dtype;
  return c;
}

void check_variant_fits(const ModelConfig& m) {
  const AttentionVariant& v = AttentionRegistry::get(m.attention);
  if (v.check_model) v.check_model(model_attention_config(m), m.attention_options);
}

}  // namespace mtalab
