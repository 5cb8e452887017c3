// What an existing run is, and whether a checkpoint, a log and a set of options belong
// together: every check that --resume, --init-from and eval make before any file is
// touched, so that a run is never continued from another run's weights, with a corrupt
// step count, or with a different model under the same name.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "experiments/run/checkpoint_file.h"
#include "experiments/train/optimizer.h"
#include "experiments/run/run_log.h"

namespace mtalab {

// What a run log says about its run.
struct LoggedRun {
  std::string path;
  std::string run_id;  // "" in logs written before run identities
  std::string status;  // running | finished | diverged | interrupted ("" before statuses)
  std::map<std::string, std::string> options;  // every option it records, by dotted name
};
// InputError when the file is not a readable run log.
LoggedRun read_logged_run(const std::string& log_path);

// Root attributes of a log whose names are options (train.*, mta.*, ...).
std::map<std::string, std::string> logged_options(const RunLog& log);

// The options a checkpoint was written with (saved as state strings "option.<name>"),
// empty for checkpoints from before they were saved.
std::map<std::string, std::string> checkpoint_options(const CheckpointData& ck);
void store_options(CheckpointData& ck, const std::map<std::string, std::string>& options);

// An option that defines the model or the data (config.h: OptionRole) and differs between
// two sets of options, either of which may leave it at its default.
struct OptionDifference {
  std::string option, was, now;
  const char* defines;  // "model" or "data"
};
std::vector<OptionDifference> defining_differences(const std::map<std::string, std::string>& was,
                                                   const std::map<std::string, std::string>& now);

// The changes of tunable options (config.h: OptionRole) between the run as logged and the
// options now given, to be recorded in the log at `step`. InputError naming the option and
// both values for an option that defines the model or the data: a resumed run keeps them.
std::vector<RunLog::OptionChange> resumed_option_changes(const LoggedRun& run,
                                                         const std::map<std::string, std::string>& now,
                                                         int64_t step);

// For eval: the options that define the model must be the checkpoint's (`source` names
// where those were read from). InputError naming the option and both values.
void check_model_options(const std::map<std::string, std::string>& run,
                         const std::map<std::string, std::string>& now, const std::string& source);

// InputError unless `tensors` holds exactly the names of `expected`, each with its shape
// (and, when `dtype` is given, stored in it), every value finite. `what`: "parameter", ...
void check_tensors(const std::map<std::string, CheckpointTensor>& tensors, const NamedParams& expected,
                   const std::string& file, const std::string& what, const DType* dtype = nullptr);

// check_tensors on the parameters, then copies them into `params` (on their device).
void load_parameters(const CheckpointData& ck, const NamedParams& params, const std::string& file);

// --init-from (a retrofit: a checkpoint of one variant into a model of another). Copies every
// parameter the model and the checkpoint both have; the model's others keep their
// initialisation (MTA's kernels at identity, ...). InputError naming the parameter when
// one of the same name has another shape or a non-finite value, or when none is shared.
struct InitFromReport {
  std::vector<std::string> copied;  // the model's parameters loaded from the checkpoint
  std::vector<std::string> kept;    // the model's parameters not in the checkpoint: their init
  std::vector<std::string> unused;  // the checkpoint's parameters this model does not have
};
InitFromReport load_shared_parameters(const CheckpointData& ck, const NamedParams& params, const std::string& file);

// A state integer of a checkpoint, which must lie in [lo, hi]; InputError otherwise,
// naming the file, the field, its value and the range.
int64_t state_int(const CheckpointData& ck, const std::string& name, const std::string& file, int64_t lo,
                  int64_t hi);

}  // namespace mtalab
