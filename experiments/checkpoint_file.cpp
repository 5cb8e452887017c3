#include "experiments/checkpoint_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "autograd/errors.h"
#include "experiments/h5io.h"

namespace mtalab {

namespace {

constexpr const char* kFormat = "checkpoint";

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
    if (name.empty() || n > 1)
      throw std::invalid_argument("checkpoint state name '" + name + "' is empty or used twice");
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

// HDF5 does not fsync; without it a power loss after the rename could leave the new name
// pointing at data still in the page cache.
void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), O_RDONLY | (directory ? O_DIRECTORY : 0));
  bool ok = fd >= 0 && ::fsync(fd) == 0;
  const int err = errno;
  if (fd >= 0) ::close(fd);
  if (!ok && !directory)  // a directory fsync is best effort: some file systems refuse it
    throw InputError(path + ": cannot sync to disk: " + std::strerror(err));
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
  const std::string tmp = path + ".tmp";
  bool created = false;
  try {
    {
      h5::Handle file = h5::create_file(tmp, /*truncate=*/true);
      created = true;
      h5::stamp_format(file, kFormat, kCheckpointFormatVersion);
      write_tensors(file, "params", data.params);
      write_tensors(file, "optim", data.optim);
      {
        h5::Handle state = h5::require_group(file, "state");
        for (const auto& [k, v] : data.ints) h5::write_attr(state, k, v);
        for (const auto& [k, v] : data.reals) h5::write_attr(state, k, v);
        for (const auto& [k, v] : data.strings) h5::write_attr(state, k, v);
      }  // every object closed, so H5Fclose really closes (and flushes) the file
      h5::close_file(file, tmp);
    }
    fsync_path(tmp, false);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw InputError(path + ": cannot rename " + tmp + " over it: " + std::strerror(errno));
    created = false;
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    fsync_path(parent.empty() ? "." : parent.string(), true);
  } catch (const InputError& e) {
    std::error_code ec;
    if (created) std::filesystem::remove(tmp, ec);
    throw InputError(std::string("cannot save checkpoint ") + path + ": " + e.what());
  } catch (...) {
    std::error_code ec;
    if (created) std::filesystem::remove(tmp, ec);
    throw;
  }
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
  return d;
}

}  // namespace mtalab
