// Results tables from run logs.
#pragma once
#include <string>
#include <vector>

namespace mtalab {
// One row per run.h5: name (its directory), attention variant, parameters, steps, final
// train loss, eval loss, metric, wall time. InputError for a file that is not a run log.
std::string format_report(const std::vector<std::string>& run_logs);
}
