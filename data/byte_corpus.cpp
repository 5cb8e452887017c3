#include "data/byte_corpus.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

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
  namespace fs = std::filesystem;
  std::error_code ec;
  if (path.empty()) throw InputError("data file path is empty; expected a file name");
  if (!fs::exists(path, ec)) throw InputError("data file " + quoted(path) + " does not exist");
  if (!fs::is_regular_file(path, ec))
    throw InputError("data file " + quoted(path) + " is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("data file " + quoted(path) + " cannot be opened for reading");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError("data file " + quoted(path) + " could not be read to the end");
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
