// Test hooks for the fault-injection tests: named points in the code that writes run files,
// where the environment variable MTALAB_FAULT makes the process die or a write fail. A
// timer-driven SIGKILL rarely lands half-way through a checkpoint; these points let a test
// put it exactly there, and simulate a full disk where no small file system can be mounted.
//
//   MTALAB_FAULT="kill@ckpt_write#3"    SIGKILL the 3rd time ckpt_write is reached
//   MTALAB_FAULT="enospc@log_write#2"   the 2nd log write fails with ENOSPC (also: eio)
//   MTALAB_FAULT="enospc@log_write#2+"  ... and every one after it (a disk that stays full)
//   MTALAB_FAULT="sigint@startup"       raise SIGINT there (a Ctrl-C during model setup)
//   MTALAB_FAULT="pause@ckpt_write"     sleep half a second there (time to send signals)
//   MTALAB_FAULT="stall@train_step#3"   hang there for ten minutes (a rank that stops answering)
//
// Several faults are separated by commas. The points: "<name>_write" and "<name>_rename"
// for each whole-file write (atomic_file.h; names "log" and "ckpt"), and "startup" in the
// trainer between building the model and touching the run directory, "train_step" at the
// start of every optimizer step, and "main" as the mtalab command starts (before any
// command installs its signal handlers). Without MTALAB_FAULT
// (always, outside tests) a point costs one branch.
#pragma once

namespace mtalab::fault {

// Called at a named point: kills the process with SIGKILL if a kill fault is due there,
// and returns the errno an injected write failure should report (0: none).
int at(const char* point);

}  // namespace mtalab::fault
