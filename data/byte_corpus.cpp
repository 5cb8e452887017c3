#include "data/byte_corpus.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <new>
#include <sstream>
#include <stdexcept>

#include "autograd/errors.h"

namespace mtalab {

namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string fmt(double x) {  // shortest natural form: 0.1, not 0.100000
  std::ostringstream o;
  o << x;
  return o.str();
}

void require_window(const std::string& what, size_t bytes, int64_t seq_len) {
  if ((int64_t)bytes < seq_len + 1)
    throw InputError(what + " holds " + std::to_string(bytes) +
                     " bytes; need at least one window of seq_len+1 = " +
                     std::to_string(seq_len + 1) + " bytes");
}

}  // namespace

std::vector<uint8_t> read_bytes(const std::string& path) {
  if (path.empty()) throw InputError("data file path is empty; expected a file name");
  // POSIX reads, so that every failure has its errno (a stream would throw from deep inside
  // its buffer on a file such as /proc/self/mem, or report only "bad").
  // O_NONBLOCK: a FIFO must not block the open; it is refused as not a regular file below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw InputError("data file " + quoted(path) + " does not exist");
    throw InputError("data file " + quoted(path) + " cannot be opened for reading: " + std::strerror(err));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    throw InputError("data file " + quoted(path) + " is not a regular file; expected a text file");
  std::vector<uint8_t> bytes;
  try {
    bytes.reserve((size_t)st.st_size);
    std::vector<uint8_t> chunk(1 << 20);
    for (;;) {
      const ssize_t n = ::read(fd, chunk.data(), chunk.size());
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        throw InputError("data file " + quoted(path) + " cannot be read: " + std::strerror(errno));
      }
      bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + n);
    }
  } catch (const std::bad_alloc&) {
    throw InputError("data file " + quoted(path) + " (" + std::to_string((long long)st.st_size) +
                     " bytes) does not fit in memory; expected a smaller file");
  } catch (const std::length_error&) {
    throw InputError("data file " + quoted(path) + " does not fit in memory; expected a smaller file");
  }
  if (bytes.empty())
    throw InputError("data file " + quoted(path) + " is empty; expected text bytes");
  return bytes;
}

ByteCorpus load_byte_corpus(const ByteCorpusConfig& cfg) {
  if (cfg.seq_len < 1)
    throw InputError("seq_len is " + std::to_string(cfg.seq_len) + "; expected at least 1");
  ByteCorpus c;
  c.train = read_bytes(cfg.path);
  if (!cfg.val_path.empty()) {
    c.val = read_bytes(cfg.val_path);
    require_window("data file " + quoted(cfg.path), c.train.size(), cfg.seq_len);
    require_window("validation file " + quoted(cfg.val_path), c.val.size(), cfg.seq_len);
    return c;
  }
  const double f = cfg.val_fraction;
  if (!(f > 0.0 && f < 1.0))
    throw InputError("val_fraction is " + fmt(f) + "; expected a value in (0, 1)");
  const size_t n = c.train.size();
  const size_t n_val = (size_t)std::llround((double)n * f);
  const int64_t w = cfg.seq_len + 1;
  if ((int64_t)(n - n_val) < w || (int64_t)n_val < w)
    throw InputError("data file " + quoted(cfg.path) + " holds " + std::to_string(n) +
                     " bytes, split by val_fraction " + fmt(f) + " into " +
                     std::to_string(n - n_val) + " training and " + std::to_string(n_val) +
                     " validation bytes; each split needs at least one window of seq_len+1 = " +
                     std::to_string(w) + " bytes");
  c.val.assign(c.train.end() - (std::ptrdiff_t)n_val, c.train.end());
  c.train.resize(n - n_val);
  return c;
}

}  // namespace mtalab
