// The training loop: batches, optimizer steps, evaluation, HDF5 run log, checkpoints,
// progress lines, resume and clean stops.
#pragma once
#include <map>
#include <string>

#include "autograd/tensor.h"
#include "experiments/config.h"

namespace mtalab {

struct RunRequest {
  TrainConfig config;
  std::map<std::string, std::string> options;  // every resolved option, for the log
  bool overwrite = false;                      // replace an existing run log
  bool resume = false;                         // continue from <out>/checkpoint.h5
  std::string init_from;                       // load parameters only from this checkpoint
  bool quiet = false;                          // no progress lines
  int64_t stop_after = 0;                      // stop cleanly after this step, as SIGINT would (0: never)
};

struct RunSummary {
  int64_t steps = 0;          // completed optimizer steps
  double train_loss = 0;      // last step's loss
  double eval_loss = 0, eval_metric = 0;
  std::string metric_name;
  double wall_s = 0;
  int64_t parameters = 0;
  bool interrupted = false;   // stopped by SIGINT/SIGTERM after saving
};

// The run's training loss diverged (NaN/inf); the log and a checkpoint were written.
struct DivergedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string run_log_path(const std::string& out_dir);     // <out>/run.h5
std::string checkpoint_path(const std::string& out_dir);  // <out>/checkpoint.h5

RunSummary train(const RunRequest& req);

// Copies a checkpoint's parameters into `params`; a missing name or a shape mismatch is an
// InputError naming the parameter and both shapes.
struct CheckpointData;
void load_parameters(const CheckpointData& ck, const std::vector<std::pair<std::string, Tensor>>& params,
                     const std::string& file);

// Installs SIGINT/SIGTERM handlers that ask a running train() to stop cleanly.
void install_stop_handlers();

}  // namespace mtalab
