// The `mtalab` command line. Exit codes: 0 done, 2 bad input (one line naming what was
// wrong and what was expected; no file touched), 3 training diverged, 130 stopped by a
// signal after saving.
#pragma once

namespace mtalab {
int mtalab_main(int argc, char** argv);
}
