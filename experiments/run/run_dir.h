// The files of a run directory, and the rules for touching them. Call these with the
// directory's RunLock held (run_lock.h): they decide from what is on disk.
//
//   <run.out>/run.h5                   the run log (run_log.h)
//   <run.out>/checkpoint.h5            the last good checkpoint (checkpoint_file.h)
//   <run.out>/checkpoint_diverged.h5   the state at the step that diverged, for inspection
//   <run.out>/run.lock                 while a process owns the directory (run_lock.h)
//   <file>.tmp                         a write in progress (atomic_file.h)
#pragma once
#include <string>
#include <vector>

namespace mtalab {

struct RunFiles {
  explicit RunFiles(const std::string& out_dir);
  std::string dir, log, checkpoint, diverged;
  // Those of log, checkpoint and diverged that exist.
  std::vector<std::string> existing() const;
};

// InputError naming what is there when the directory already holds a run's files (a log,
// or a checkpoint with no log beside it: both are results) and `overwrite` is not given.
void refuse_existing_run(const RunFiles& f, bool overwrite);

// After --overwrite has replaced the log: removes the old run's checkpoints, so that no
// checkpoint of the old run can be resumed into the new log.
void remove_old_checkpoints(const RunFiles& f);

// Removes <file>.tmp left by a process killed while writing (the directory is locked, so
// nobody is writing them now).
void remove_stale_temporaries(const RunFiles& f);

// A fresh identity for a run (32 hex digits), stored in its log and every checkpoint so
// that a checkpoint is only ever resumed into the log of the run that wrote it.
std::string new_run_id();

}  // namespace mtalab
