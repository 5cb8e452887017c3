#include "experiments/run/checkpoint_file.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "autograd/errors.h"
#include "experiments/run/atomic_file.h"
#include "experiments/run/h5io.h"

namespace mtalab {

namespace {

constexpr const char* kFormat = "checkpoint";
constexpr const char* kDigestName = "digest";  // in /state; reserved

void check_names(const char* section, const std::map<std::string, CheckpointTensor>& tensors) {
  for (const auto& [name, t] : tensors) {
    // A '/' would nest groups and "." names the group itself; dots elsewhere are fine.
    if (name.empty() || name == "." || name.find('/') != std::string::npos)
      throw std::invalid_argument(std::string("checkpoint ") + section + " name '" + name + "' is invalid");
    if (h5::numel(t.shape) != static_cast<int64_t>(t.numel()))
      throw std::invalid_argument(std::string("checkpoint ") + section + " " + name + ": " +
                                  std::to_string(t.numel()) + " values do not fill its shape");
  }
}

void validate(const CheckpointData& d) {
  check_names("params", d.params);
  check_names("optim", d.optim);
  std::map<std::string, int> seen;
  for (const auto& kv : d.ints) ++seen[kv.first];
  for (const auto& kv : d.reals) ++seen[kv.first];
  for (const auto& kv : d.strings) ++seen[kv.first];
  for (const auto& [name, n] : seen)
    if (name.empty() || n > 1 || name == kDigestName)
      throw std::invalid_argument("checkpoint state name '" + name + "' is empty, used twice or reserved");
}

void write_tensors(hid_t file, const char* group, const std::map<std::string, CheckpointTensor>& tensors) {
  h5::Handle g = h5::require_group(file, group);
  for (const auto& [name, t] : tensors)
    std::visit(
        [&, &name = name, &t = t](const auto& v) {
          using T = typename std::decay_t<decltype(v)>::value_type;
          h5::write_dataset(g, name, h5::mem_type<T>(), h5::file_type<T>(), t.shape, v.data());
        },
        t.values);
}

// A 64-bit digest of everything a checkpoint holds, stored beside it (/state/digest).
// HDF5 checksums its metadata but not the values, and a state field edited by hand or by
// a bug (a step count, a data position) would otherwise resume silently into a wrong run.
// Not cryptographic: it catches corruption, not forgery.
class Digest {
 public:
  void bytes(const void* p, size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    word(n);
    for (; n >= 8; c += 8, n -= 8) {
      uint64_t w;
      std::memcpy(&w, c, 8);
      word(w);
    }
    uint64_t tail = 0;
    if (n > 0) std::memcpy(&tail, c, n);  // c is null for an empty tensor
    word(tail);
  }
  void text(const std::string& s) { bytes(s.data(), s.size()); }
  void word(uint64_t w) {
    h_ = (h_ ^ w) * 0xbf58476d1ce4e5b9ull;
    h_ ^= h_ >> 31;
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  uint64_t h_ = 0x9e3779b97f4a7c15ull;
};

void digest_tensors(Digest& d, const std::map<std::string, CheckpointTensor>& tensors) {
  d.word(tensors.size());
  for (const auto& [name, t] : tensors) {
    d.text(name);
    d.word(t.shape.size());
    for (int64_t dim : t.shape) d.word(static_cast<uint64_t>(dim));
    std::visit([&](const auto& v) { d.bytes(v.data(), v.size() * sizeof(v[0])); }, t.values);
    d.word(t.is_f32() ? 4 : 8);
  }
}

std::string digest_of(const CheckpointData& data) {
  Digest d;
  digest_tensors(d, data.params);
  digest_tensors(d, data.optim);
  for (const auto& [k, v] : data.ints) {
    d.text(k);
    d.word(static_cast<uint64_t>(v));
  }
  for (const auto& [k, v] : data.reals) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    d.text(k);
    d.word(bits);
  }
  for (const auto& [k, v] : data.strings) {
    if (k == kDigestName) continue;
    d.text(k);
    d.text(v);
  }
  return d.hex();
}

std::map<std::string, CheckpointTensor> read_tensors(hid_t file, const std::string& path, const std::string& group) {
  const std::string expected = "; expected an mtalab checkpoint written by save_checkpoint";
  if (!h5::is_group(file, group)) throw InputError(path + ": missing group /" + group + expected);
  h5::Handle g = h5::open_group(file, group);
  std::map<std::string, CheckpointTensor> out;
  for (const auto& name : h5::children(g)) {
    const std::string where = "/" + group + "/" + name;
    h5::Handle d = h5::own(H5Oopen(g, name.c_str(), H5P_DEFAULT), g, "cannot open " + where);
    if (H5Iget_type(d) != H5I_DATASET) throw InputError(path + ": " + where + " is not a dataset" + expected);
    h5::Handle type = h5::own(H5Dget_type(d), d, "cannot read the type of " + where);
    const size_t size = H5Tget_size(type);
    if (H5Tget_class(type) != H5T_FLOAT || (size != 4 && size != 8))
      throw InputError(path + ": " + where + " has an unsupported element type; expected float32 or float64");
    CheckpointTensor t;
    t.shape = h5::shape_of(d);
    // Same width in memory as in the file, so HDF5 converts nothing: values are bit exact.
    if (size == 4)
      t.values = h5::read_dataset<float>(d);
    else
      t.values = h5::read_dataset<double>(d);
    out.emplace(name, std::move(t));
  }
  return out;
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointData& data) {
  validate(data);  // before touching the disk
  // Built in memory and written whole: HDF5 never meets a full disk half-way through.
  h5::MemoryFile file = h5::MemoryFile::create(path);
  h5::stamp_format(file.id(), kFormat, kCheckpointFormatVersion);
  write_tensors(file.id(), "params", data.params);
  write_tensors(file.id(), "optim", data.optim);
  {
    h5::Handle state = h5::require_group(file.id(), "state");
    for (const auto& [k, v] : data.ints) h5::write_attr(state, k, v);
    for (const auto& [k, v] : data.reals) h5::write_attr(state, k, v);
    for (const auto& [k, v] : data.strings) h5::write_attr(state, k, v);
    h5::write_attr(state, kDigestName, digest_of(data));
  }
  auto [bytes, size] = file.image();
  ReplaceOptions o;
  o.durable = true;  // a power loss after the rename must not leave the new name empty
  o.fault_name = "ckpt";
  try {
    replace_file(path, bytes, size, o);
  } catch (const IoError& e) {
    throw IoError("cannot save checkpoint " + path + ": " + e.what() + " (the previous checkpoint is intact)");
  }
  file.close();
}

CheckpointData load_checkpoint(const std::string& path) {
  h5::Handle file = h5::open_file(path, h5::Mode::read, "checkpoint");
  h5::check_format(file, path, kFormat, kCheckpointFormatVersion);
  CheckpointData d;
  d.params = read_tensors(file, path, "params");
  d.optim = read_tensors(file, path, "optim");
  if (!h5::is_group(file, "state"))
    throw InputError(path + ": missing group /state; expected an mtalab checkpoint written by save_checkpoint");
  for (auto& [name, v] : h5::read_attrs(h5::open_group(file, "state"))) {
    if (auto* i = std::get_if<int64_t>(&v))
      d.ints[name] = *i;
    else if (auto* r = std::get_if<double>(&v))
      d.reals[name] = *r;
    else
      d.strings[name] = std::get<std::string>(std::move(v));
  }
  h5::close_file(file, path);
  // Checkpoints written before digests existed have none and are taken as they are.
  if (auto it = d.strings.find(kDigestName); it != d.strings.end()) {
    const std::string stored = it->second;
    d.strings.erase(it);
    if (digest_of(d) != stored)
      throw InputError(path + ": the checkpoint's contents do not match its digest (corrupt, or edited after it "
                       "was written); expected a checkpoint exactly as mtalab saved it");
  }
  return d;
}

std::string first_nonfinite(const std::map<std::string, CheckpointTensor>& tensors) {
  for (auto& [name, t] : tensors) {
    const bool bad = std::visit(
        [](const auto& v) {
          for (auto x : v)
            if (!std::isfinite(x)) return true;
          return false;
        },
        t.values);
    if (bad) return name;
  }
  return "";
}

}  // namespace mtalab
