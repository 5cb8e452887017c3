// Training checkpoints as HDF5 files, saved atomically and validated on load.
//
// Layout:
//   /                  attributes mtalab_format="checkpoint", mtalab_format_version=1
//   /params/<name>     one dataset per parameter, float32 or float64, its shape
//                      (names keep their dots: /params/layers.0.attention.wq.weight)
//   /optim/<name>      optimizer state tensors, same
//   /state             group whose scalar attributes are the int64, float64 and string state
//                      (step, RNG seed and counter, data position, ...) and "digest"
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace mtalab {

constexpr int64_t kCheckpointFormatVersion = 1;

struct CheckpointTensor {
  std::vector<int64_t> shape;
  std::variant<std::vector<float>, std::vector<double>> values;  // row-major; the dtype

  bool is_f32() const { return values.index() == 0; }
  size_t numel() const {
    return std::visit([](const auto& v) { return v.size(); }, values);
  }
};

// The first tensor (by name) holding a NaN or an infinity, or "" when all are finite.
std::string first_nonfinite(const std::map<std::string, CheckpointTensor>& tensors);

struct CheckpointData {
  std::map<std::string, CheckpointTensor> params;
  std::map<std::string, CheckpointTensor> optim;
  // Names are shared by the three maps (they are attributes of one group).
  std::map<std::string, int64_t> ints;
  std::map<std::string, double> reals;
  std::map<std::string, std::string> strings;
};

// Builds the file in memory, writes it to `path`.tmp (synced), then renames it over `path`
// (atomic_file.h): a crash or a full disk never leaves a half-written checkpoint, and an
// existing one stays intact until the rename. Values round-trip bit for bit; a digest of
// the whole contents is stored in /state and checked by load_checkpoint.
// std::invalid_argument for bad data (a name with '/', a shape that does not match its
// values, the reserved state name "digest"); IoError when the file cannot be written.
void save_checkpoint(const std::string& path, const CheckpointData& data);

// InputError naming the file when it is missing, not HDF5, truncated or corrupt, not an
// mtalab checkpoint, of another format version, holds tensors that are not float32/64, or
// does not match its digest.
CheckpointData load_checkpoint(const std::string& path);

}  // namespace mtalab
