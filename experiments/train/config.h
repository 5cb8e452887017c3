// Everything a training run is configured by, as declared options (name, type, default,
// help, range). The command line, config files, run logs and `--help` all read these.
#pragma once
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "experiments/train/optimizer.h"
#include "layers/options.h"
#include "layers/transformer.h"

namespace mtalab {

struct TrainConfig {
  // what to learn
  std::string task = "find_block";  // a registered task (experiments/train_data.h)
  std::string data_path, val_path;
  double val_fraction = 0.1;
  int64_t seq_len = 256;
  bool shuffle = true;
  OptionValues options;  // every value of train_option_specs(): tasks read their task.* here
  // the model
  ModelConfig model;
  // how
  int64_t steps = 1000, batch_size = 32, grad_accum = 1;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  double grad_clip = 1.0;
  int64_t eval_every = 250, eval_max_batches = 0, eval_batch_size = 64, log_every = 10, checkpoint_every = 0;
  uint64_t seed = 0;
  int threads = 0;
  double dist_timeout = 60;  // seconds an exchange between ranks may wait (experiments/dist)
  double bucket_mb = 4;      // gradient megabytes per bucket of the overlapped sum (dist/bucketed_sum.h)
  bool overlap_reduce = true;
  int zero = 0;  // 1: ZeRO-1, the optimizer state sharded across ranks
  Device device = kCPU;
  // where
  std::string out_dir = "runs/default";
};

// Every non-attention option, with dotted names: model.*, data.*, train.*, run.*, and the
// task.* options of every registered task.
const std::vector<OptionSpec>& train_option_specs();

// Builds a TrainConfig from resolved values of train_option_specs() and the chosen
// variant's options. Cross-option checks throw InputError naming both options.
TrainConfig make_train_config(const OptionValues& values, const OptionValues& attention_values);

// InputError unless `d` exists here: `option` names where it came from (--train.device,
// generate's --device), and the message lists the devices there are.
void check_device_exists(const Device& d, const std::string& option);

// What an option means to a run that already exists (--resume, eval).
enum class OptionRole {
  model,    // defines the model: its shapes, dtype, variant and the variant's options
  data,     // defines what is learned: data.*, task.*, train.seed, train.optimizer
  tunable,  // how training proceeds (train.lr, train.steps, ...; model.dropout, run.out):
            // may change on --resume, and the change is recorded in the run log
};
OptionRole option_role(const std::string& dotted_name);

// Refuses options given explicitly (names in `given`) that would have no effect with the
// other options, e.g. --task.block_len with --data.task text, or --train.momentum with
// AdamW: silently accepting them would misdescribe the run. InputError naming both.
void check_options_take_effect(const OptionValues& values, const OptionValues& attention_values,
                               const std::set<std::string>& given);

// The attention layers' configuration of a model (layer 0; the model's n_layers), as the
// variants' model checks and descriptions take it.
AttentionConfig model_attention_config(const ModelConfig& m);

// The variant's own checks against the whole model (AttentionVariant::check_model), e.g.
// that MTA's --mta.kq_layers selects some layer: InputError naming the option.
void check_variant_fits(const ModelConfig& m);

}  // namespace mtalab
