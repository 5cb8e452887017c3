// `mtalab sweep FILE --launcher slurm`: a sweep's runs as ONE Slurm job array.
//
// Submission writes, beside the local launcher's sweep.ini and sweep.tsv (the manifest):
//   <out>/slurm/sweep.sbatch   the batch script (Slurm settings as #SBATCH lines, then one exec)
//   <out>/slurm/jobs.tsv       for each submitted run: its array task (JOB_TASK), when it was
//                              submitted and Slurm's output file
// and submits `sbatch --array=LIST%K sweep.sbatch`, where LIST holds the manifest rows of the
// runs that are not finished (task i runs row i) and K is --slurm.parallel. Which runs go is
// decided by plan_sweep_run, as for the local launcher and --dry-run; runs whose task of an
// earlier submission is still pending or running in Slurm are left to it.
//
// Each task runs `mtalab sweep-task` (run_slurm_task), which decides again from the run
// directory (start, resume, start again, or nothing when it is done), runs `mtalab train`
// exactly as the local launcher would (same directory, options, seed and output file
// logs/NAME.log), and records the outcome in sweep.tsv (under slurm/manifest.lock; tasks on
// different nodes share it). Preemption and time limits: the script asks for SIGUSR1
// --slurm.signal seconds before the limit (`--signal=B:USR1@S`; it reaches the batch shell
// only, which is why the script execs mtalab). The task hands it to the run as SIGTERM — the
// run stops after its step with a checkpoint (exit 130) — and requeues itself with
// `scontrol requeue`, at most --slurm.requeues times per submission; the requeued task
// resumes from the checkpoint bit for bit. scancel, a preemption or the limit itself send
// SIGTERM to every process of the task: the run checkpoints, the task records it
// interrupted, and relaunching the sweep resumes it. Any other failure is recorded failed
// and not requeued; --retry-failed submits it again.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "experiments/commands/sweep.h"

namespace mtalab {

// The Slurm settings: `--slurm.KEY VALUE` on the command line, `KEY = VALUE` under [slurm]
// in the sweep file (the command line wins). The one list the CLI, the file and the help use.
struct SlurmSetting {
  const char* key;
  const char* value_name;
  const char* help;
};
const std::vector<SlurmSetting>& slurm_settings();

struct SlurmOptions {
  std::string partition, time, mem, gres;  // empty: the cluster's default
  int gpus = 0;                            // GPUs per task (--gpus-per-task); 0: none asked
  int cpus = 0;                            // --cpus-per-task (0: train.threads if set, else Slurm's default)
  int parallel = 0;                        // at most K tasks at once (0: no limit)
  int ntasks = 1;                          // ranks per run, started by `launch` when > 1 (MPI)
  int requeues = 3;                        // self-requeues per submission after the time-limit signal
  int signal_s = 120;                      // SIGUSR1 this many seconds before the time limit
  std::string launch = "srun --mpi=pmix";  // what starts the ranks of a run when ntasks > 1
  std::vector<std::string> extra;          // more sbatch options, one #SBATCH line each
};

// The options from the sweep file's [slurm] section overridden by the command line's
// (keys without the "slurm." prefix). InputError naming the key and what was expected.
SlurmOptions slurm_options(const std::map<std::string, std::string>& settings);

// The batch script for the sweep: #SBATCH lines, then `exec BINARY sweep-task ...`. `cwd`
// is where the sweep was submitted from (relative paths in the sweep resolve there).
std::string slurm_batch_script(const SweepSpec& spec, const SlurmOptions& o, int cpus, const std::string& binary,
                               const std::string& cwd);

// "0-3", "1,3,5-7": Slurm's --array list for these task indices (sorted, distinct).
std::string slurm_array_list(const std::vector<size_t>& indices);

// Submits the sweep's unfinished runs as one job array (or prints what it would submit, with
// the script, for --dry-run). With `wait`, follows the tasks until none is left in Slurm and
// returns the outcome like the local launcher; without, returns once submitted. InputError
// (exit 2, nothing written) when sbatch, squeue or scontrol are not on PATH or a setting is
// invalid; sbatch refusing the job is an InputError with its message (nothing submitted).
SweepResult submit_slurm_sweep(const SweepRequest& req, const SlurmOptions& o, bool wait);

// The body of one array task (`mtalab sweep-task`, exec'd by the batch script): run
// SLURM_ARRAY_TASK_ID of the sweep in req.spec, as described above. Returns the exit code
// for Slurm: the run's, or 0 when it was requeued or had nothing left to do.
int run_slurm_task(const SweepRequest& req, const SlurmOptions& o);

// `mtalab sweep FILE --status`: each run's state from its directory and the manifest, and for
// a Slurm sweep Slurm's view of its task (pending, running, requeued; failed with its job and
// output files). Works for a local sweep too (then without jobs).
void print_sweep_status(const SweepRequest& req);

}  // namespace mtalab
