// Everything a training run is configured by, as declared options (name, type, default,
// help, range). The command line, config files, run logs and `--help` all read these.
#pragma once
#include <string>
#include <vector>

#include "data/find_block.h"
#include "experiments/optimizer.h"
#include "layers/options.h"
#include "layers/transformer.h"

namespace mtalab {

struct TrainConfig {
  // what to learn
  std::string task = "find_block";  // find_block | text
  std::string data_path, val_path;
  double val_fraction = 0.1;
  int64_t seq_len = 256;
  bool shuffle = true;
  FindBlockConfig find_block;
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
  Device device = kCPU;
  // where
  std::string out_dir = "runs/default";
};

// Every non-attention option, with dotted names: model.*, data.*, task.*, train.*, run.*.
const std::vector<OptionSpec>& train_option_specs();

// Builds a TrainConfig from resolved values of train_option_specs() and the chosen
// variant's options. Cross-option checks throw InputError naming both options.
TrainConfig make_train_config(const OptionValues& values, const OptionValues& attention_values);

}  // namespace mtalab
