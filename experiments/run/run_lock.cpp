#include "experiments/run/run_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <filesystem>

#include "autograd/errors.h"
#include "experiments/run/atomic_file.h"

namespace mtalab {

namespace fs = std::filesystem;

namespace {

struct flock whole_file(short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // to the end, however long
  fl.l_pid = 0;  // required by F_OFD_*
  return fl;
}

std::string read_holder(int fd) {
  // The holder writes its name just after taking the lock: a contender that lost the race
  // by a hair waits a moment for it.
  for (int attempt = 0; attempt < 50; ++attempt) {
    char buf[512];
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
    if (!s.empty()) return s;
    ::usleep(2000);
  }
  return "a process that has not written its name";
}

std::string describe_self(const std::string& command) {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  std::time_t t = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return "pid " + std::to_string(::getpid()) + " on " + host + ", " + command + ", since " + when + "\n";
}

// The directories create_directories would make for `dir`, deepest first.
std::vector<std::string> missing_dirs(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::path p = dir; !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    out.push_back(p.string());
    if (p == p.parent_path()) break;
  }
  return out;
}

bool same_file(int fd, const std::string& path) {
  struct stat a, b;
  return ::fstat(fd, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

std::string run_lock_path(const std::string& out) { return (fs::path(out) / "run.lock").string(); }

RunLock RunLock::acquire(const std::string& out_dir, const std::string& command) {
  RunLock lock;
  lock.dir_ = out_dir;
  lock.path_ = run_lock_path(out_dir);
  std::error_code ec;
  if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec))
    throw InputError("--run.out '" + out_dir + "' is not a directory; expected a run directory (or a new path)");
  lock.created_dirs_ = missing_dirs(out_dir);
  fs::create_directories(out_dir, ec);
  if (ec) throw IoError("cannot create run directory " + out_dir + ": " + ec.message());
  // Retried when the file we locked was unlinked by a holder that was just leaving: the
  // lock must be on the file the path names now.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(lock.path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw IoError("cannot create " + lock.path_ + ": " + errno_text(errno));
    struct flock fl = whole_file(F_WRLCK);
    if (::fcntl(fd, F_OFD_SETLK, &fl) != 0) {
      const int err = errno;
      const std::string holder = err == EAGAIN || err == EACCES ? read_holder(fd) : "";
      ::close(fd);
      if (holder.empty()) throw IoError("cannot lock " + lock.path_ + ": " + errno_text(err));
      throw InputError("run directory '" + out_dir + "' is in use by " + holder +
                       "; expected a directory no live process is writing (wait for that run, stop it, or use "
                       "another --run.out)");
    }
    if (!same_file(fd, lock.path_)) {
      ::close(fd);
      continue;
    }
    lock.fd_ = fd;
    const std::string me = describe_self(command);
    // Who holds it is for other processes' messages only: a failed write changes nothing.
    if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, me.data(), me.size(), 0);
    return lock;
  }
  throw IoError("cannot lock " + lock.path_ + ": it keeps being replaced");
}

RunLock::RunLock(RunLock&& o) noexcept
    : fd_(o.fd_), dir_(std::move(o.dir_)), path_(std::move(o.path_)), created_dirs_(std::move(o.created_dirs_)) {
  o.fd_ = -1;
}

RunLock& RunLock::operator=(RunLock&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = o.fd_;
    dir_ = std::move(o.dir_);
    path_ = std::move(o.path_);
    created_dirs_ = std::move(o.created_dirs_);
    o.fd_ = -1;
  }
  return *this;
}

RunLock::~RunLock() { release(); }

void RunLock::release() noexcept {
  if (fd_ >= 0) {
    // Unlinked while still held: a process that opened the old file meanwhile finds, after
    // locking it, that the path no longer names it, and starts again (acquire).
    ::unlink(path_.c_str());
    ::close(fd_);
    fd_ = -1;
  }
  for (const auto& d : created_dirs_)
    if (::rmdir(d.c_str()) != 0) break;  // not empty: the run wrote something, keep it
  created_dirs_.clear();
}

std::optional<std::string> run_lock_holder(const std::string& out_dir) {
  const std::string path = run_lock_path(out_dir);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct flock fl = whole_file(F_WRLCK);
  std::optional<std::string> holder;
  if (::fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) holder = read_holder(fd);
  ::close(fd);
  return holder;
}

}  // namespace mtalab
