#include "experiments/run/run_dir.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "autograd/errors.h"
#include "experiments/run/atomic_file.h"

namespace mtalab {

namespace fs = std::filesystem;

RunFiles::RunFiles(const std::string& out_dir)
    : dir(out_dir),
      log((fs::path(out_dir) / "run.h5").string()),
      checkpoint((fs::path(out_dir) / "checkpoint.h5").string()),
      diverged((fs::path(out_dir) / "checkpoint_diverged.h5").string()) {}

std::vector<std::string> RunFiles::existing() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto* p : {&log, &checkpoint, &diverged})
    if (fs::exists(fs::symlink_status(*p, ec))) out.push_back(*p);
  return out;
}

void refuse_existing_run(const RunFiles& f, bool overwrite) {
  if (overwrite) return;
  const auto there = f.existing();
  if (there.empty()) return;
  std::error_code ec;
  if (fs::exists(fs::symlink_status(f.log, ec)))
    throw InputError("run log '" + f.log +
                     "' already exists (use --overwrite to replace the run, --resume to continue it, or another --run.out)");
  throw InputError("'" + there.front() + "' already exists with no run log beside it; it is the result of an earlier "
                   "run (use --overwrite to replace it, or another --run.out)");
}

void remove_old_checkpoints(const RunFiles& f) {
  for (const auto* p : {&f.checkpoint, &f.diverged}) {
    std::error_code ec;
    fs::remove(*p, ec);
    if (ec) throw IoError("cannot remove the old run's " + *p + ": " + ec.message());
  }
}

void remove_stale_temporaries(const RunFiles& f) {
  for (const auto* p : {&f.log, &f.checkpoint, &f.diverged}) {
    std::error_code ec;
    const std::string tmp = *p + ".tmp";
    if (fs::is_regular_file(fs::symlink_status(tmp, ec))) fs::remove(tmp, ec);
  }
}

std::string new_run_id() {
  std::random_device rd;
  std::seed_seq seq{rd(), rd(), rd(), rd(), (unsigned)::getpid(),
                    (unsigned)std::chrono::system_clock::now().time_since_epoch().count()};
  std::mt19937_64 g(seq);
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)g(), (unsigned long long)g());
  return buf;
}

}  // namespace mtalab
