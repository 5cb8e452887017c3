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
// only with retry_failed.
#pragma once
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

}  // namespace mtalab
