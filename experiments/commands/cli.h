// The `mtalab` command line. Exit codes:
//   0    done
//   1    internal error (a bug: the one line names the exception)
//   2    bad input: one line naming what was wrong and what was expected; no file touched
//        (this includes a run directory in use by another live process)
//   3    training diverged (the log is written, the last good checkpoint kept)
//   4    I/O failure: a file could not be written (full disk, permissions, a vanished
//        directory); the line names the file, the cause and what the files on disk hold
//   5    out of memory
//   130  stopped by a signal (after saving, or before anything was written)
#pragma once

namespace mtalab {
int mtalab_main(int argc, char** argv);
}
