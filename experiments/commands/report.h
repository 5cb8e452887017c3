// Results tables from run logs, run directories and sweeps.
#pragma once
#include <string>
#include <vector>

namespace mtalab {

struct ReportOptions {
  enum class Format { text, csv, markdown };
  Format format = Format::text;
  bool per_seed = false;  // each run's own row under its configuration's
  std::string baseline;   // a configuration's name: adds deltas against it
};

struct Report {
  std::string table;
  int unreadable = 0;  // inputs that could not be read (their rows say why)
};

// One row per configuration. Runs that differ only in their seed (and where they were
// written) are one configuration: every value is the mean ± sample standard deviation over
// its finished runs, n says how many (2/3: one of three did not finish), and the status
// counts the others (finished, diverged at N, interrupted at N, running, unreadable: why,
// and for a sweep's runs that never wrote a log: not started, failed (exit N)). A sweep
// directory (holding sweep.tsv) stands for its runs, grouped by the sweep's configurations.
// Columns: run, attention, n, params, steps, tokens, train_loss, eval_loss, metric, value,
// tok/s, wall_s, peak_MiB (the largest resident set), [Δvalue, Δeval vs the baseline], status.
// A run that did not finish shows its last logged values; a metric never measured shows "-".
// One bad input never suppresses the others. InputError for an unknown baseline.
Report format_report(const std::vector<std::string>& inputs, const ReportOptions& options = {});

// The readable runs of the inputs, grouped as format_report groups them (for plots).
struct ReportRun {
  std::string configuration, name, log, status;
};
std::vector<ReportRun> report_runs(const std::vector<std::string>& inputs);

}  // namespace mtalab
