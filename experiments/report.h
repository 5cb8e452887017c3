// Results tables from run logs.
#pragma once
#include <string>
#include <vector>

namespace mtalab {

struct Report {
  std::string table;
  int unreadable = 0;  // inputs that could not be read (their rows say why)
};

// One row per input (a run.h5, or a run directory holding one): name (its directory),
// attention variant, parameters, steps, train loss, eval loss, metric, wall time and
// status — finished, diverged at N, interrupted at N, running (a live process holds the
// run directory) or unreadable: why. A run that did not finish shows its last logged
// values; a metric never measured shows "-". One bad input never suppresses the others.
Report format_report(const std::vector<std::string>& inputs);

}  // namespace mtalab
