// The training loop: batches, optimizer steps, evaluation, HDF5 run log, checkpoints,
// progress lines, resume and clean stops — and the rules that keep a run's results whole:
// one live process per run directory (run_lock.h), a checkpoint only ever resumed into
// its own run's log (resume.h), a diverged run never replacing its last good checkpoint,
// and every failure stopping with the files on disk as they were at the last good write.
#pragma once
#include <cmath>
#include <map>
#include <stdexcept>
#include <string>

#include "autograd/tensor.h"
#include "experiments/train/config.h"

namespace mtalab {

struct RunRequest {
  TrainConfig config;
  std::map<std::string, std::string> options;  // every resolved option, for the log
  bool overwrite = false;                      // replace the run in run.out (log and checkpoints)
  bool resume = false;                         // continue from <out>/checkpoint.h5
  std::string init_from;                       // load parameters only from this checkpoint
  bool quiet = false;                          // no progress lines
  int64_t stop_after = 0;                      // stop cleanly after this step, as SIGINT would (0: never)
};

struct RunSummary {
  int64_t steps = 0;         // completed optimizer steps
  int64_t target_steps = 0;  // train.steps
  // The last logged training loss and the last evaluation. NaN (and the flag false) when
  // there is none yet: a value never measured must not read as a plausible 0.
  double train_loss = std::nan("");
  bool has_train_loss = false;
  double eval_loss = std::nan(""), eval_metric = std::nan("");
  bool evaluated = false;
  int64_t eval_step = 0;                        // the step of that evaluation
  int64_t first_eval_step = 0;                  // when the first evaluation is due
  std::string metric_name;
  double wall_s = 0;
  int64_t parameters = 0;
  int64_t checkpoint_step = -1;  // the step checkpoint.h5 holds (-1: none was written)
  bool interrupted = false;      // stopped before train.steps (a signal or stop_after), after saving
  int stop_signal = 0;           // the signal that stopped it (0: stop_after)
};

// The one line the command line prints at the end: "done: ..." for a finished run, "stopped
// at step N of M ..." for an interrupted one; metrics never measured say so.
std::string summary_line(const RunSummary& s);

// The run's training loss or weights diverged (NaN/inf). The log was written and the last
// good checkpoint kept; the message says which step it holds.
struct DivergedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A stop signal came before the run had written anything (exit 130, no file touched).
struct InterruptedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Copies a checkpoint's parameters into `params` (resume.h: every parameter present with
// its shape, none extra, all finite; InputError naming the parameter otherwise).
struct CheckpointData;
void load_parameters(const CheckpointData& ck, const NamedParams& params, const std::string& file);

std::string run_log_path(const std::string& out_dir);     // <out>/run.h5
std::string checkpoint_path(const std::string& out_dir);  // <out>/checkpoint.h5

// InputError for bad input (options, data, a checkpoint that does not belong, a directory in
// use or holding another run), before any file is touched; IoError (atomic_file.h) when a
// file cannot be written, OutOfMemoryError (memory_check.h) when memory runs out, both
// naming what the files on disk still hold.
RunSummary train(const RunRequest& req);

}  // namespace mtalab
