// Slurm's client commands (sbatch, squeue, scontrol) run as child processes: found on PATH,
// their output captured. Nothing else in mtalab talks to Slurm.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace mtalab {

struct Captured {
  int code = -1;  // exit code; 128 + the signal when one killed it; 127 when it could not start
  std::string out, err;
};

// Runs argv[0] (searched on PATH) with `input` on its stdin and collects its stdout and
// stderr. `ignore_term`: the child ignores SIGTERM (scontrol requeue, whose own task is
// signalled while it runs).
Captured capture(const std::vector<std::string>& argv, const std::string& input = "", bool ignore_term = false);

// A command's complaint on one line: its output's lines joined by "; ", without the
// "sbatch: error: " prefixes.
std::string one_line(const std::string& output);

// The executable a command name resolves to on PATH ("" when none).
std::string find_on_path(const std::string& name);

// InputError (exit 2) naming what is missing when sbatch, squeue or scontrol are not on PATH.
void require_slurm_clients();

// One array task in Slurm's queue (squeue --array), keyed by "JOB_TASK" (e.g. "12_3").
struct SlurmTask {
  std::string state;   // PENDING, RUNNING, COMPLETING, REQUEUED, ...
  std::string reason;  // why it is pending ("BeginTime", "JobArrayTaskLimit", "Resources")
  std::string node;
  int restarts = 0;
};

// This user's jobs still known to the controller (finished ones stay MinJobAge seconds).
// InputError with squeue's message when it fails (no controller reachable).
std::map<std::string, SlurmTask> slurm_queue();

}  // namespace mtalab
