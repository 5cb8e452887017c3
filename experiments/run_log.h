// One HDF5 file per training run: options and provenance as root attributes, growing
// tables of per-step numbers, snapshots of learned arrays, one-off arrays and final scalars.
//
// Layout (all paths absolute):
//   /                       attributes: mtalab_format="run_log", mtalab_format_version=1,
//                           plus whatever the caller sets (options, version, commit, host, ...)
//   /<table>/               group per table ("train", "eval"); attribute columns = names in order
//   /<table>/step           int64 [rows], extendible, chunked, uncompressed
//   /<table>/<column>       float64 [rows], same
//   /<group>/<name>         snapshots: [n, ...shape] float32|float64, attribute snapshot_steps
//   /<group>/<name>_steps   int64 [n]: the step of each snapshot
//   /<any/path>             one-off arrays (e.g. /attention/layer_0 [H,T,T])
//   /final                  group whose float64 attributes are the summary scalars
//
// Crash safety: append_row buffers rows in memory; flush() writes them and calls H5Fflush,
// after which the file on disk is complete and consistent. A process killed outside flush()
// (even by SIGKILL) leaves a readable file holding every row up to its last flush. Snapshots,
// arrays and attributes go to HDF5 at once and are likewise safe once the next flush() is
// done: flush after each evaluation. (Files use the HDF5 1.8 object formats: the 1.10
// superblock would mark a killed writer's file unopenable without h5clear; see h5io.cpp.)
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "experiments/h5io.h"

namespace mtalab {

// An array read back from a log: its shape and row-major values widened to double.
struct LoggedArray {
  std::vector<int64_t> shape;
  std::vector<double> values;
};

class RunLog {
 public:
  // A table of rows keyed by step. The first column is always "step" (stored as int64);
  // steps must never decrease, which is what lets truncate_after cut a crashed run's tail.
  class Table {
   public:
    const std::string& name() const { return name_; }
    const std::vector<std::string>& columns() const { return columns_; }
    // Buffers one row, values in column order; it reaches the file at RunLog::flush().
    // std::invalid_argument for a wrong length or a step that is not an integer >= the last.
    void append_row(const std::vector<double>& row);
    int64_t rows() const { return stored_ + static_cast<int64_t>(pending_steps_.size()); }
    std::optional<int64_t> last_step() const { return last_step_; }

   private:
    friend class RunLog;
    Table(hid_t file, const std::string& name, const std::vector<std::string>& columns, bool create);
    void write_pending();
    void truncate_after(int64_t step);

    std::string name_;
    std::vector<std::string> columns_;
    std::vector<h5::Handle> datasets_;             // one per column, in column order
    std::vector<int64_t> pending_steps_;           // rows not yet written, column by column
    std::vector<std::vector<double>> pending_;     // columns 1..n-1
    int64_t stored_ = 0;                           // rows in the file
    std::optional<int64_t> last_step_;
  };

  // A new log at `path` (parent directories created). An existing file is an InputError
  // and is left untouched unless `overwrite`.
  static RunLog create(const std::string& path, bool overwrite = false);
  // An existing log, for a resumed run; InputError if missing or not a run log.
  static RunLog open_append(const std::string& path);
  // Read-only access (tools, tests); works while a training still has the log open.
  static RunLog open_read(const std::string& path);

  RunLog(RunLog&&) noexcept = default;
  RunLog& operator=(RunLog&& other) noexcept;
  ~RunLog();  // writes buffered rows and closes, swallowing errors: call close() to see them

  const std::string& path() const { return path_; }
  bool writable() const { return writable_; }

  // --- root attributes: strings, integers (bool and all integer types as int64), doubles.
  // Setting an existing name replaces it. The mtalab_format* names are reserved.
  void set_attr(const std::string& name, const std::string& value);
  void set_attr(const std::string& name, const char* value) { set_attr(name, std::string(value)); }
  void set_attr(const std::string& name, double value);
  template <class I, std::enable_if_t<std::is_integral_v<I>, int> = 0>
  void set_attr(const std::string& name, I value) { set_int_attr(name, static_cast<int64_t>(value)); }
  std::optional<h5::AttrValue> find_attr(const std::string& name) const;
  // The typed getters throw InputError naming the file when missing or of another type.
  std::string attr_string(const std::string& name) const;
  int64_t attr_int(const std::string& name) const;
  double attr_double(const std::string& name) const;  // also accepts an integer attribute
  std::map<std::string, h5::AttrValue> attrs() const;

  // --- tables
  // Opens or creates /<name>; an existing table must have exactly these columns (InputError
  // otherwise, e.g. a resumed run logging another metric). The reference stays valid
  // until close().
  Table& table(const std::string& name, const std::vector<std::string>& columns);
  std::vector<std::string> table_names() const;
  std::vector<std::string> columns(const std::string& table) const;
  // Every row, flushed or not, in order. The step column reads as double here.
  std::vector<double> column(const std::string& table, const std::string& column) const;
  std::vector<int64_t> steps(const std::string& table) const;
  // Keeps the rows before the first one whose step exceeds `step` (for a run resumed from a
  // checkpoint at `step`: the crashed run's later rows go).
  void truncate_after(const std::string& table, int64_t step);
  // truncate_after on every table and every snapshot series in the file.
  void truncate_all_after(int64_t step);

  // --- /final summary scalars
  void set_final(const std::string& name, double value);
  std::map<std::string, double> finals() const;

  // --- arrays
  // Appends `data` (row-major, `shape`) as snapshot n of /<group>/<name> [n, ...shape] and
  // `step` to /<group>/<name>_steps. Shape and element type must match earlier snapshots.
  void snapshot(const std::string& group, const std::string& name, int64_t step,
                const std::vector<int64_t>& shape, const std::vector<float>& data);
  void snapshot(const std::string& group, const std::string& name, int64_t step,
                const std::vector<int64_t>& shape, const std::vector<double>& data);
  std::vector<int64_t> snapshot_steps(const std::string& group, const std::string& name) const;
  void truncate_snapshots_after(const std::string& group, const std::string& name, int64_t step);
  // A one-off array at `path` (e.g. "/attention/layer_0"), replacing any earlier one.
  void write_array(const std::string& path, const std::vector<int64_t>& shape,
                   const std::vector<float>& data);
  void write_array(const std::string& path, const std::vector<int64_t>& shape,
                   const std::vector<double>& data);
  LoggedArray read_array(const std::string& path) const;

  // Writes buffered rows and makes the file on disk consistent (H5Fflush).
  void flush();
  // flush() and close the file; further calls other than close() are errors.
  void close();

 private:
  RunLog(std::string path, h5::Handle file, bool writable);
  void set_int_attr(const std::string& name, int64_t value);
  void require_writable(const char* op) const;
  hid_t file() const;
  Table& open_table(const std::string& name);
  template <class T>
  void snapshot_impl(const std::string& group, const std::string& name, int64_t step,
                     const std::vector<int64_t>& shape, const std::vector<T>& data);
  template <class T>
  void write_array_impl(const std::string& path, const std::vector<int64_t>& shape,
                        const std::vector<T>& data);

  std::string path_;
  h5::Handle file_;
  bool writable_ = false;
  std::map<std::string, std::unique_ptr<Table>> tables_;  // unique_ptr: references stay valid
};

}  // namespace mtalab
