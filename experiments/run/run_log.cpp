#include "experiments/run/run_log.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "autograd/errors.h"
#include "experiments/run/atomic_file.h"

namespace mtalab {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "run_log";
constexpr int64_t kVersion = 1;
constexpr const char* kColumnsAttr = "columns";         // on each table group
constexpr const char* kStepsAttr = "snapshot_steps";    // on each snapshot dataset
constexpr int64_t kTableChunkRows = 1024;                // 8 KiB chunks per column
constexpr int64_t kSnapshotChunkBytes = 64 * 1024;

std::string join(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s + "]";
}

// One path component: HDF5 would read '/' as nesting and "." as the group itself.
void check_name(const char* what, const std::string& name) {
  if (name.empty() || name == "." || name.find('/') != std::string::npos)
    throw std::invalid_argument(std::string("invalid ") + what + " name '" + name + "'");
}

bool is_reserved(const std::string& name) { return name == h5::kFormatAttr || name == h5::kVersionAttr; }

// Rows present in every column: a crash in the middle of a flush can leave some longer.
int64_t common_rows(const std::vector<h5::Handle>& datasets) {
  int64_t rows = -1;
  for (const auto& d : datasets) {
    int64_t n = h5::shape_of(d).at(0);
    rows = rows < 0 ? n : std::min(rows, n);
  }
  return std::max<int64_t>(rows, 0);
}

// Index of the first step greater than `step`: the rows to keep.
int64_t cut_after(const std::vector<int64_t>& steps, int64_t step) {
  auto it = std::find_if(steps.begin(), steps.end(), [&](int64_t s) { return s > step; });
  return it - steps.begin();
}

bool holds_floats_of(hid_t dset, size_t bytes) {
  h5::Handle type = h5::own(H5Dget_type(dset), dset, "cannot read a dataset's type");
  return H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == bytes;
}

const char* float_name(size_t bytes) { return bytes == 4 ? "float32" : "float64"; }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// Makes a snapshot series and its steps equally long (see common_rows) and returns the steps.
std::vector<int64_t> sync_series(hid_t data, hid_t steps_ds) {
  std::vector<int64_t> steps = h5::read_dataset<int64_t>(steps_ds);
  int64_t n = h5::shape_of(data).at(0);
  if (n != static_cast<int64_t>(steps.size())) {
    n = std::min<int64_t>(n, steps.size());
    h5::resize_rows(data, n);
    h5::resize_rows(steps_ds, n);
    steps.resize(n);
  }
  return steps;
}

void truncate_series(hid_t data, hid_t steps_ds, int64_t step) {
  int64_t keep = cut_after(sync_series(data, steps_ds), step);
  h5::resize_rows(data, keep);
  h5::resize_rows(steps_ds, keep);
}

}  // namespace

// --- Table ----------------------------------------------------------------------------

RunLog::Table::Table(hid_t file, const std::string& name, const std::vector<std::string>& columns,
                     bool create)
    : name_(name) {
  if (create) {
    columns_ = columns;
    h5::Handle group = h5::require_group(file, name);
    h5::write_strings_attr(group, kColumnsAttr, columns_);
    for (size_t c = 0; c < columns_.size(); ++c)
      datasets_.push_back(h5::create_extendible(group, columns_[c],
                                                c == 0 ? h5::file_type<int64_t>() : h5::file_type<double>(),
                                                {}, kTableChunkRows));
  } else {
    h5::Handle group = h5::open_group(file, name);
    columns_ = h5::read_strings_attr(group, kColumnsAttr);
    for (const auto& c : columns_) datasets_.push_back(h5::open_dataset(group, c));
    stored_ = common_rows(datasets_);
    for (const auto& d : datasets_)
      if (h5::shape_of(d).at(0) > stored_) h5::resize_rows(d, stored_);
    if (!datasets_.empty()) {
      std::vector<int64_t> steps = h5::read_dataset<int64_t>(datasets_[0]);
      if (stored_ > 0) last_step_ = steps.at(stored_ - 1);
    }
  }
  pending_.resize(columns_.empty() ? 0 : columns_.size() - 1);
}

void RunLog::Table::append_row(const std::vector<double>& row) {
  if (row.size() != columns_.size())
    throw std::invalid_argument("table " + name_ + ": row has " + std::to_string(row.size()) +
                                " values, expected " + std::to_string(columns_.size()) + " " + join(columns_));
  const double s = row[0];
  if (!(std::isfinite(s) && s == std::floor(s) && std::fabs(s) < 9.2e18))
    throw std::invalid_argument("table " + name_ + ": step must be an integer");
  const auto step = static_cast<int64_t>(s);
  if (last_step_ && step < *last_step_)
    throw std::invalid_argument("table " + name_ + ": step " + std::to_string(step) + " after step " +
                                std::to_string(*last_step_) +
                                "; steps must not decrease (resuming? call truncate_after first)");
  pending_steps_.push_back(step);
  for (size_t c = 1; c < row.size(); ++c) pending_[c - 1].push_back(row[c]);
  last_step_ = step;
}

void RunLog::Table::write_pending() {
  const auto n = static_cast<int64_t>(pending_steps_.size());
  if (n == 0) return;
  h5::append_rows(datasets_[0], h5::mem_type<int64_t>(), n, pending_steps_.data());
  for (size_t c = 1; c < datasets_.size(); ++c)
    h5::append_rows(datasets_[c], h5::mem_type<double>(), n, pending_[c - 1].data());
  stored_ += n;
  pending_steps_.clear();
  for (auto& p : pending_) p.clear();
}

void RunLog::Table::truncate_after(int64_t step) {
  write_pending();
  std::vector<int64_t> steps = h5::read_dataset<int64_t>(datasets_[0]);
  const int64_t keep = cut_after(steps, step);
  for (const auto& d : datasets_) h5::resize_rows(d, keep);
  stored_ = keep;
  last_step_.reset();
  if (keep > 0) last_step_ = steps[keep - 1];
}

// --- opening and closing --------------------------------------------------------------

RunLog::RunLog(std::string path, h5::Handle file) : path_(std::move(path)), file_(std::move(file)), writable_(false) {}

RunLog::RunLog(std::string path, h5::MemoryFile mem, bool exists)
    : path_(std::move(path)), mem_(std::move(mem)), writable_(true), written_(exists) {}

RunLog RunLog::create(const std::string& path, bool overwrite) {
  h5::quiet();
  std::error_code ec;
  if (!overwrite && fs::exists(fs::symlink_status(path, ec)))
    throw InputError(path + ": run log already exists; expected a new path (or overwrite)");
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::create_directories(parent, ec) && ec)
    throw IoError(path + ": cannot create directory " + parent.string() + ": " + ec.message());
  RunLog log(path, h5::MemoryFile::create(path), /*exists=*/false);
  h5::stamp_format(log.file(), kFormat, kVersion);
  // Nothing reaches the disk before the first flush: a reader never sees a log without
  // the attributes its writer sets first, and a writer that dies before then leaves no
  // file to block the next attempt. That write replaces a file only with `overwrite`.
  log.replace_on_first_write_ = overwrite;
  return log;
}

RunLog RunLog::open_append(const std::string& path) {
  // Checked on the file first, for the messages (missing, a directory, not HDF5).
  h5::Handle probe = h5::open_file(path, h5::Mode::read, "run log");
  h5::check_format(probe, path, kFormat, kVersion);
  probe.reset();
  RunLog log(path, h5::MemoryFile::open(path), /*exists=*/true);
  h5::check_format(log.file(), path, kFormat, kVersion);
  return log;
}

RunLog RunLog::open_read(const std::string& path) {
  h5::Handle f = h5::open_file(path, h5::Mode::read, "run log");
  h5::check_format(f, path, kFormat, kVersion);
  return RunLog(path, std::move(f));
}

RunLog& RunLog::operator=(RunLog&& other) noexcept {
  if (this != &other) {
    try {
      close();
    } catch (...) {
    }
    path_ = std::move(other.path_);
    file_ = std::move(other.file_);
    mem_ = std::move(other.mem_);
    writable_ = other.writable_;
    written_ = other.written_;
    replace_on_first_write_ = other.replace_on_first_write_;
    tables_ = std::move(other.tables_);
  }
  return *this;
}

RunLog::~RunLog() {
  try {
    close();
  } catch (...) {
  }
}

void RunLog::write_image(bool durable) {
  auto [data, size] = mem_.image();
  ReplaceOptions o;
  o.durable = durable;
  o.no_replace = !written_ && !replace_on_first_write_;
  o.fault_name = "log";
  try {
    if (!replace_file(path_, data, size, o))
      throw InputError(path_ + ": run log already exists; expected a new path (or overwrite)");
  } catch (const IoError& e) {
    throw IoError("cannot write run log " + path_ + ": " + e.what() + " (" + path_ + " on disk is unchanged)");
  }
  written_ = true;
}

void RunLog::flush() {
  require_writable("flush");
  for (auto& [_, t] : tables_) t->write_pending();
  write_image(/*durable=*/false);
}

void RunLog::close() {
  if (!file_ && !mem_) return;
  std::exception_ptr error;
  if (writable_) {
    try {
      for (auto& [_, t] : tables_) t->write_pending();
      write_image(/*durable=*/true);
    } catch (...) {
      error = std::current_exception();
    }
  }
  tables_.clear();  // their datasets must be closed for H5Fclose to close the file
  try {
    if (writable_)
      mem_.close();
    else
      h5::close_file(file_, path_);
  } catch (...) {
    if (!error) error = std::current_exception();
  }
  if (error) std::rethrow_exception(error);
}

hid_t RunLog::file() const {
  if (!file_ && !mem_) throw std::logic_error("run log " + path_ + " is closed");
  h5::quiet();  // this thread may not have made an HDF5 call yet: raw calls follow
  return writable_ ? mem_.id() : static_cast<hid_t>(file_);
}

void RunLog::require_writable(const char* op) const {
  file();
  if (!writable_) throw std::logic_error(std::string("run log ") + path_ + " is read-only: cannot " + op);
}

// --- attributes -----------------------------------------------------------------------

void RunLog::set_attr(const std::string& name, const std::string& value) {
  require_writable("set_attr");
  if (is_reserved(name)) throw std::invalid_argument("attribute name " + name + " is reserved");
  h5::write_attr(file(), name, value);
}

void RunLog::set_attr(const std::string& name, double value) {
  require_writable("set_attr");
  if (is_reserved(name)) throw std::invalid_argument("attribute name " + name + " is reserved");
  h5::write_attr(file(), name, value);
}

void RunLog::set_int_attr(const std::string& name, int64_t value) {
  require_writable("set_attr");
  if (is_reserved(name)) throw std::invalid_argument("attribute name " + name + " is reserved");
  h5::write_attr(file(), name, value);
}

std::optional<h5::AttrValue> RunLog::find_attr(const std::string& name) const {
  return h5::read_attr(file(), name);
}

namespace {

template <class T>
T typed_attr(const std::optional<h5::AttrValue>& v, const std::string& path, const std::string& name,
             const char* type) {
  if (!v) throw InputError(path + ": attribute " + name + " is missing; expected a " + type);
  if constexpr (std::is_same_v<T, double>)
    if (auto* i = std::get_if<int64_t>(&*v)) return static_cast<double>(*i);
  if (auto* x = std::get_if<T>(&*v)) return *x;
  throw InputError(path + ": attribute " + name + " has another type; expected a " + type);
}

}  // namespace

std::string RunLog::attr_string(const std::string& name) const {
  return typed_attr<std::string>(find_attr(name), path_, name, "string");
}

int64_t RunLog::attr_int(const std::string& name) const {
  return typed_attr<int64_t>(find_attr(name), path_, name, "integer");
}

double RunLog::attr_double(const std::string& name) const {
  return typed_attr<double>(find_attr(name), path_, name, "number");
}

std::map<std::string, h5::AttrValue> RunLog::attrs() const { return h5::read_attrs(file()); }

// --- tables ---------------------------------------------------------------------------

RunLog::Table& RunLog::open_table(const std::string& name) {
  if (auto it = tables_.find(name); it != tables_.end()) return *it->second;
  if (!h5::is_group(file(), name)) throw InputError(path_ + ": no table /" + name + "; expected one");
  std::unique_ptr<Table> t(new Table(file(), name, {}, false));
  return *tables_.emplace(name, std::move(t)).first->second;
}

RunLog::Table& RunLog::table(const std::string& name, const std::vector<std::string>& columns) {
  require_writable("table");
  check_name("table", name);
  if (columns.empty() || columns[0] != "step")
    throw std::invalid_argument("table " + name + ": the first column must be 'step'");
  for (size_t i = 0; i < columns.size(); ++i) {
    check_name("column", columns[i]);
    if (std::find(columns.begin(), columns.begin() + i, columns[i]) != columns.begin() + i)
      throw std::invalid_argument("table " + name + ": duplicate column " + columns[i]);
  }
  Table* t = nullptr;
  if (auto it = tables_.find(name); it != tables_.end()) {
    t = it->second.get();
  } else if (h5::exists(file(), name)) {
    t = &open_table(name);
  } else {
    std::unique_ptr<Table> fresh(new Table(file(), name, columns, true));
    t = tables_.emplace(name, std::move(fresh)).first->second.get();
  }
  if (t->columns() != columns)
    throw InputError(path_ + ": table /" + name + " has columns " + join(t->columns()) + "; expected " +
                     join(columns) + " (a resumed run must log the same columns)");
  return *t;
}

std::vector<std::string> RunLog::table_names() const {
  std::vector<std::string> names;
  for (const auto& n : h5::children(file())) {
    if (!h5::is_group(file(), n)) continue;
    h5::Handle g = h5::open_group(file(), n);
    if (H5Aexists(g, kColumnsAttr) > 0) names.push_back(n);
  }
  return names;
}

std::vector<std::string> RunLog::columns(const std::string& table) const {
  if (!h5::is_group(file(), table)) throw InputError(path_ + ": no table /" + table + "; expected one");
  return h5::read_strings_attr(h5::open_group(file(), table), kColumnsAttr);
}

namespace {

// Rows of one column in the file, clipped to the rows every column has.
template <class T>
std::vector<T> read_column(hid_t file, const std::string& path, const std::string& table,
                           const std::vector<std::string>& cols, const std::string& column) {
  auto it = std::find(cols.begin(), cols.end(), column);
  if (it == cols.end())
    throw InputError(path + ": table /" + table + " has no column " + column + "; it has " + join(cols));
  h5::Handle group = h5::open_group(file, table);
  std::vector<h5::Handle> datasets;
  for (const auto& c : cols) datasets.push_back(h5::open_dataset(group, c));
  std::vector<T> values = h5::read_dataset<T>(datasets[it - cols.begin()]);
  values.resize(common_rows(datasets));
  return values;
}

}  // namespace

std::vector<double> RunLog::column(const std::string& table, const std::string& column) const {
  const std::vector<std::string> cols = columns(table);
  std::vector<double> values = read_column<double>(file(), path_, table, cols, column);
  if (auto it = tables_.find(table); it != tables_.end()) {
    const Table& t = *it->second;
    const size_t c = std::find(cols.begin(), cols.end(), column) - cols.begin();
    if (c == 0)
      values.insert(values.end(), t.pending_steps_.begin(), t.pending_steps_.end());
    else
      values.insert(values.end(), t.pending_[c - 1].begin(), t.pending_[c - 1].end());
  }
  return values;
}

std::vector<int64_t> RunLog::steps(const std::string& table) const {
  std::vector<int64_t> steps = read_column<int64_t>(file(), path_, table, columns(table), "step");
  if (auto it = tables_.find(table); it != tables_.end())
    steps.insert(steps.end(), it->second->pending_steps_.begin(), it->second->pending_steps_.end());
  return steps;
}

void RunLog::truncate_after(const std::string& table, int64_t step) {
  require_writable("truncate_after");
  open_table(table).truncate_after(step);
}

void RunLog::truncate_all_after(int64_t step) {
  require_writable("truncate_all_after");
  for (const auto& p : h5::all_paths(file())) {
    h5::Handle obj = h5::own(H5Oopen(file(), p.c_str(), H5P_DEFAULT), file(), "cannot open " + p);
    if (H5Iget_type(obj) == H5I_GROUP && H5Aexists(obj, kColumnsAttr) > 0) {
      open_table(p).truncate_after(step);
    } else if (H5Iget_type(obj) == H5I_DATASET && H5Aexists(obj, kStepsAttr) > 0) {
      const auto steps_name = std::get<std::string>(*h5::read_attr(obj, kStepsAttr));
      const std::string parent = p.find('/') == std::string::npos ? "" : p.substr(0, p.rfind('/') + 1);
      truncate_series(obj, h5::open_dataset(file(), parent + steps_name), step);
    }
  }
}

// --- option changes -------------------------------------------------------------------

namespace {
constexpr const char* kChangesGroup = "option_changes";
}

void RunLog::record_option_change(const OptionChange& c) {
  require_writable("record_option_change");
  h5::Handle group = h5::require_group(file(), kChangesGroup);
  char name[32];
  std::snprintf(name, sizeof name, "%06zu", h5::children(group).size());  // sorts in order
  h5::Handle entry = h5::require_group(group, name);
  h5::write_attr(entry, "step", c.step);
  h5::write_attr(entry, "option", c.option);
  h5::write_attr(entry, "from", c.from);
  h5::write_attr(entry, "to", c.to);
  set_attr(c.option, c.to);
}

std::vector<RunLog::OptionChange> RunLog::option_changes() const {
  std::vector<OptionChange> out;
  if (!h5::is_group(file(), kChangesGroup)) return out;
  h5::Handle group = h5::open_group(file(), kChangesGroup);
  for (const auto& n : h5::children(group)) {
    h5::Handle entry = h5::open_group(group, n);
    const std::string where = std::string(kChangesGroup) + "/" + n;
    OptionChange c;
    c.step = typed_attr<int64_t>(h5::read_attr(entry, "step"), path_, where + "/step", "integer");
    c.option = typed_attr<std::string>(h5::read_attr(entry, "option"), path_, where + "/option", "string");
    c.from = typed_attr<std::string>(h5::read_attr(entry, "from"), path_, where + "/from", "string");
    c.to = typed_attr<std::string>(h5::read_attr(entry, "to"), path_, where + "/to", "string");
    out.push_back(c);
  }
  return out;
}

// --- /final ---------------------------------------------------------------------------

void RunLog::set_final(const std::string& name, double value) {
  require_writable("set_final");
  check_name("final value", name);
  h5::write_attr(h5::require_group(file(), "final"), name, value);
}

void RunLog::clear_final() {
  require_writable("clear_final");
  if (h5::exists(file(), "final")) h5::check(H5Ldelete(file(), "final", H5P_DEFAULT), file(), "cannot remove /final");
}

std::map<std::string, double> RunLog::finals() const {
  std::map<std::string, double> out;
  if (!h5::is_group(file(), "final")) return out;
  for (const auto& [name, v] : h5::read_attrs(h5::open_group(file(), "final")))
    out[name] = typed_attr<double>(v, path_, "final/" + name, "number");
  return out;
}

// --- arrays ---------------------------------------------------------------------------

template <class T>
void RunLog::snapshot_impl(const std::string& group, const std::string& name, int64_t step,
                           const std::vector<int64_t>& shape, const std::vector<T>& data) {
  require_writable("snapshot");
  check_name("snapshot", name);
  if (h5::numel(shape) != static_cast<int64_t>(data.size()))
    throw std::invalid_argument("snapshot " + name + ": " + std::to_string(data.size()) +
                                " values for shape " + shape_str(shape));
  const std::string path = group + "/" + name, steps_path = path + "_steps";
  h5::Handle data_ds, steps_ds;
  if (!h5::exists(file(), path)) {
    const int64_t bytes = std::max<int64_t>(h5::numel(shape) * static_cast<int64_t>(sizeof(T)), 1);
    data_ds = h5::create_extendible(file(), path, h5::file_type<T>(), shape,
                                    std::max<int64_t>(kSnapshotChunkBytes / bytes, 1));
    steps_ds = h5::create_extendible(file(), steps_path, h5::file_type<int64_t>(), {}, kTableChunkRows);
    h5::write_attr(data_ds, kStepsAttr, name + "_steps");
  } else {
    data_ds = h5::open_dataset(file(), path);
    steps_ds = h5::open_dataset(file(), steps_path);
    std::vector<int64_t> have = h5::shape_of(data_ds);
    if (have.empty() || !std::equal(have.begin() + 1, have.end(), shape.begin(), shape.end()) ||
        !holds_floats_of(data_ds, sizeof(T)))
      throw InputError(path_ + ": snapshots " + path + " are " + shape_str(have) + " arrays, not of " +
                       float_name(sizeof(T)) + " " + shape_str(shape) +
                       "; expected the same model as the run that wrote them");
    std::vector<int64_t> steps = sync_series(data_ds, steps_ds);
    if (!steps.empty() && step < steps.back())
      throw std::invalid_argument("snapshot " + path + ": step " + std::to_string(step) + " after step " +
                                  std::to_string(steps.back()) + " (resuming? call truncate_all_after first)");
  }
  h5::append_rows(data_ds, h5::mem_type<T>(), 1, data.data());
  h5::append_rows(steps_ds, h5::mem_type<int64_t>(), 1, &step);
}

void RunLog::snapshot(const std::string& group, const std::string& name, int64_t step,
                      const std::vector<int64_t>& shape, const std::vector<float>& data) {
  snapshot_impl(group, name, step, shape, data);
}

void RunLog::snapshot(const std::string& group, const std::string& name, int64_t step,
                      const std::vector<int64_t>& shape, const std::vector<double>& data) {
  snapshot_impl(group, name, step, shape, data);
}

std::vector<int64_t> RunLog::snapshot_steps(const std::string& group, const std::string& name) const {
  const std::string path = group + "/" + name + "_steps";
  if (!h5::exists(file(), path)) throw InputError(path_ + ": no snapshots " + group + "/" + name);
  return h5::read_dataset<int64_t>(h5::open_dataset(file(), path));
}

void RunLog::truncate_snapshots_after(const std::string& group, const std::string& name, int64_t step) {
  require_writable("truncate_snapshots_after");
  const std::string path = group + "/" + name;
  if (!h5::exists(file(), path)) throw InputError(path_ + ": no snapshots " + path);
  truncate_series(h5::open_dataset(file(), path), h5::open_dataset(file(), path + "_steps"), step);
}

template <class T>
void RunLog::write_array_impl(const std::string& path, const std::vector<int64_t>& shape,
                              const std::vector<T>& data) {
  require_writable("write_array");
  if (h5::numel(shape) != static_cast<int64_t>(data.size()))
    throw std::invalid_argument("array " + path + ": " + std::to_string(data.size()) +
                                " values for shape " + shape_str(shape));
  // write_dataset replaces whatever link is at `path`; never let that be a table or group.
  if (path.empty() || path == "/" || h5::is_group(file(), path))
    throw std::invalid_argument("array path '" + path + "' names a group");
  h5::write_dataset(file(), path, h5::mem_type<T>(), h5::file_type<T>(), shape, data.data());
}

void RunLog::write_array(const std::string& path, const std::vector<int64_t>& shape,
                         const std::vector<float>& data) {
  write_array_impl(path, shape, data);
}

void RunLog::write_array(const std::string& path, const std::vector<int64_t>& shape,
                         const std::vector<double>& data) {
  write_array_impl(path, shape, data);
}

LoggedArray RunLog::read_array(const std::string& path) const {
  if (!h5::exists(file(), path) || h5::is_group(file(), path))
    throw InputError(path_ + ": no array " + path + "; expected a dataset there");
  h5::Handle d = h5::open_dataset(file(), path);
  return {h5::shape_of(d), h5::read_dataset<double>(d)};
}

}  // namespace mtalab
