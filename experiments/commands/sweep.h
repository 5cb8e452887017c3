// `mtalab sweep`: every run of a sweep file, N at once, resumable.
//
// Each run is a child `mtalab train` process in <out>/<run name>/ (its own lock, log and
// checkpoint; its output in <out>/logs/<run name>.log), so a run that diverges or fails
// never stops the others. Beside the runs: sweep.ini (the sweep as run) and sweep.tsv, the
// manifest (one line per run: configuration, seed, status, exit code, attempts, wall time,
// the varied options), rewritten whole after every change.
//
// Relaunching the same sweep skips finished runs, resumes interrupted ones from their
// checkpoints (or starts them again when they stopped before the first one), extends a
// finished run when the sweep now asks for more steps, and retries diverged or failed runs
// only with retry_failed. The same decision (plan_sweep_run) serves --dry-run, this local
// launcher and the Slurm one (sweep_slurm.h), which runs each run as an array task.
#pragma once
#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "experiments/commands/sweep_spec.h"

namespace mtalab {

struct SweepRequest {
  SweepSpec spec;
  std::vector<SweepRun> runs;
  int jobs = 1;
  bool retry_failed = false;
  bool dry_run = false;  // print what would run, run nothing
  std::string binary;    // the mtalab executable the runs are started with
  VariantScope scope;    // how req.spec expanded into req.runs (to expand sweep.ini alike)
  // Checks one run's options as `mtalab train` would and returns them resolved (every
  // option with its value); InputError naming what is wrong.
  std::function<std::map<std::string, std::string>(const SweepRun&)> validate;
};

struct SweepResult {
  int finished = 0, diverged = 0, failed = 0, interrupted = 0, busy = 0;
  bool stopped = false;  // by SIGINT/SIGTERM
  int exit_code() const { return stopped ? 130 : (diverged + failed + busy + interrupted > 0 ? 3 : 0); }
};

// Every run is validated first: one bad run fails the sweep with an InputError listing
// each bad run and its option before anything is written.
SweepResult run_sweep(const SweepRequest& req);

// Every run's options resolved by req.validate; one InputError listing every bad run (and
// its option) when any is bad, before anything is written.
std::vector<std::map<std::string, std::string>> validate_sweep_runs(const SweepRequest& req);

// A sweep knows its runs by what they are. InputError (nothing written) when the sweep
// directory belongs to another sweep — its sweep.ini names runs by other options, or a run
// both share differs in an option that defines the model or the data — or when a run
// directory's log records a model or data option other than what the sweep now asks for
// it (naming the run, the option and both values). Options that may change (steps, the lr
// schedule, eval cadence: config.h OptionRole::tunable) follow the resume rules.
void check_sweep_identity(const SweepRequest& req, const std::vector<std::map<std::string, std::string>>& resolved);

// What makes `now` another sweep than `owner` (the sweep.ini of the directory): one line
// per difference; empty when `now` is the same sweep, perhaps grown (more seeds, more axis
// values or configurations) or with other tunable options.
std::vector<std::string> sweep_identity_differences(const SweepSpec& owner, const SweepSpec& now,
                                                    const VariantScope& scope);

// Threads for each of `jobs` runs on this machine's cores; InputError when jobs × threads
// would exceed the cores (`threads` 0: split the cores evenly).
int sweep_threads_per_job(int jobs, int threads, int cores);

// The cores this process may run on.
int available_cores();

struct ManifestRow {
  std::string name, configuration, status = "pending", log;
  int64_t seed = 0;
  int exit_code = -1;
  int attempts = 0;
  double wall_s = 0;
  std::map<std::string, std::string> varied;
};

// sweep.tsv of a sweep directory (empty when there is none).
std::vector<ManifestRow> read_sweep_manifest(const std::string& sweep_dir);
std::string sweep_manifest_path(const std::string& sweep_dir);

// The options that vary between the sweep's runs: the manifest's last columns, in order.
std::vector<std::string> sweep_varied_options(const SweepSpec& spec);

// One row per run, in the runs' order: what the last manifest said about it (status, exit
// code, attempts, wall time) with the run's name, configuration, seed, log and options.
std::vector<ManifestRow> sweep_manifest_rows(const SweepSpec& spec, const std::vector<SweepRun>& runs);

// Rewrites sweep.tsv whole (atomically).
void write_sweep_manifest(const std::string& sweep_dir, const std::vector<std::string>& varied,
                          const std::vector<ManifestRow>& rows);

// A run's directory and its output's path relative to the sweep directory (logs/NAME.log).
std::string sweep_run_dir(const SweepSpec& spec, const SweepRun& run);
std::string sweep_run_log(const SweepRun& run);

// What to do with one run, from its directory and its last manifest row (nullptr: none):
// start it, resume it from its checkpoint (interrupted, or finished with fewer steps than
// `steps`), start it again (--overwrite: stopped before its first checkpoint, or a retried
// failure), leave it (done), or skip it (busy in another process; failed or diverged
// without retry_failed). `why` says which, for progress lines and --dry-run.
struct RunPlan {
  enum Kind { start, resume, restart, done, skip } kind = start;
  std::string why;
};
RunPlan plan_sweep_run(const std::string& run_dir, int64_t steps, const ManifestRow* before, bool retry_failed);

// "  NAME    would resume: resumed from its checkpoint": one run's line of --dry-run.
std::string sweep_dry_run_line(const std::string& name, const RunPlan& plan);

// The `mtalab train` command line that carries out a start, resume or restart plan.
std::vector<std::string> sweep_train_args(const std::string& binary, const std::string& run_dir, const SweepRun& run,
                                          RunPlan::Kind kind);

// Appends "== start: ARGS" (resume, start again; `note` after the verb) to the run's output
// file, then starts ARGS as a child with its stdout and stderr there and OMP_NUM_THREADS =
// threads. The child is in its own process group (a terminal's ^C reaches the launcher
// only) and gets SIGTERM if the launcher dies. IoError when the log cannot be opened.
pid_t start_sweep_run(const std::vector<std::string>& args, RunPlan::Kind kind, const std::string& log_path,
                      int threads, const std::string& note = "");

// "eval_loss 1.2345 | error_rate 0.1000" from a finished run's log ("" if unreadable).
std::string sweep_run_outcome(const std::string& run_dir);

// "finished", "diverged", "interrupted" or "failed" for a run's exit code.
std::string sweep_status_for_exit(int code);

}  // namespace mtalab
