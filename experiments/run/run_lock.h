// A run directory belongs to one live process. `train` holds <run.out>/run.lock, an
// open-file-description lock (F_OFD_SETLK) on that file, from before it looks at the
// directory until it has closed the run's files; a second process that wants to write the
// directory fails at once, before touching anything. The kernel drops the lock when the
// holder dies, even by SIGKILL, so a killed run never leaves the directory blocked: a stale
// run.lock file is harmless and reused. Tools that only read (report) test the lock without
// taking it.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace mtalab {

std::string run_lock_path(const std::string& out_dir);  // <out>/run.lock

class RunLock {
 public:
  // Creates the directory (and parents) if needed, then takes the lock. InputError when
  // another live process holds it, naming that process (pid, host, command, start time);
  // IoError when the directory or lock file cannot be created. `command` is recorded in the
  // lock file for such messages (e.g. "mtalab train").
  static RunLock acquire(const std::string& out_dir, const std::string& command);

  RunLock() = default;
  RunLock(RunLock&& o) noexcept;
  RunLock& operator=(RunLock&& o) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  // Releases the lock and removes the lock file, and the directories acquire() created if
  // they are empty again (a run refused on bad input leaves nothing behind).
  ~RunLock();

  bool held() const { return fd_ >= 0; }
  const std::string& dir() const { return dir_; }

 private:
  void release() noexcept;
  int fd_ = -1;
  std::string dir_, path_;
  std::vector<std::string> created_dirs_;  // deepest first
};

// Who holds the run directory's lock, if a live process does: "pid 1234 on host, mtalab
// train, since 2026-12-01T10:00:00Z". nullopt when nobody does (or there is no lock file).
std::optional<std::string> run_lock_holder(const std::string& out_dir);

}  // namespace mtalab
