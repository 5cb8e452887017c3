#include "experiments/run/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "experiments/run/fault_injection.h"

namespace mtalab {

namespace {

// Writes all of [data, data+size) to fd; returns 0 or the errno of the failed write.
int write_range(int fd, const char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<size_t>(n);
  }
  return 0;
}

// The fault point sits half-way, where a kill leaves a half-written temporary file.
int write_all(int fd, const char* data, size_t size, const std::string& fault_point) {
  const size_t half = size / 2;
  if (int err = write_range(fd, data, half)) return err;
  if (int err = fault::at(fault_point.c_str())) return err;
  return write_range(fd, data + half, size - half);
}

// Renames without replacing; falls back to a check when the file system lacks
// RENAME_NOREPLACE (only the run-directory lock then keeps two writers apart).
int rename_no_replace(const char* from, const char* to) {
  if (::renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
  struct stat st;
  if (::lstat(to, &st) == 0) return EEXIST;
  return ::rename(from, to) == 0 ? 0 : errno;
}

void sync_directory_of(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const int fd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);  // best effort: some file systems refuse to sync a directory
  ::close(fd);
}

}  // namespace

std::string errno_text(int err) { return std::strerror(err); }

bool replace_file(const std::string& path, const void* data, size_t size, const ReplaceOptions& opts) {
  const std::string tmp = path + ".tmp", base = opts.fault_name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError("cannot write " + tmp + ": " + errno_text(errno));
  auto fail = [&](int err, const std::string& what) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw IoError(what + ": " + errno_text(err));
  };
  if (int err = write_all(fd, static_cast<const char*>(data), size, base + "_write")) fail(err, "cannot write " + tmp);
  if (opts.durable && ::fsync(fd) != 0) fail(errno, "cannot sync " + tmp + " to disk");
  const int fd_copy = fd;
  fd = -1;
  if (::close(fd_copy) != 0) fail(errno, "cannot write " + tmp);  // NFS reports late errors here
  if (int err = fault::at((base + "_rename").c_str())) fail(err, "cannot rename " + tmp + " to " + path);
  if (opts.no_replace) {
    const int err = rename_no_replace(tmp.c_str(), path.c_str());
    if (err == EEXIST) {
      ::unlink(tmp.c_str());
      return false;
    }
    if (err) fail(err, "cannot rename " + tmp + " to " + path);
  } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
    fail(errno, "cannot rename " + tmp + " to " + path);
  }
  if (opts.durable) sync_directory_of(path);
  return true;
}

}  // namespace mtalab
