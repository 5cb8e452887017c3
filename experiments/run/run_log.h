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
//   /option_changes/<n>     one group per option changed on --resume: attributes step,
//                           option, from, to (the root attribute holds the current value)
//
// Crash safety: a writable log lives in memory (h5io.h: MemoryFile); flush() writes the
// whole file to <path>.tmp and renames it over <path> (atomic_file.h). The file on disk is
// therefore always exactly the log as of some flush: a process killed at any moment (even
// by SIGKILL, even mid-write) or a full disk leaves the previous flush intact, never a
// half-written file, a phantom row or a file HDF5 cannot open. Readers (h5py with its
// default file locking too) can open the log at any time: the writer holds no lock on the
// file on disk. Rows, snapshots, arrays and attributes reach the disk at the next flush().
// (Files use the HDF5 1.8 object formats: checksummed metadata, readable by HDF5 1.8.)
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "experiments/run/h5io.h"

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

  // A new log at `path` (parent directories created), written to disk at its first flush()
  // or close(). An existing file is an InputError and is left untouched unless `overwrite`
  // (also when it appears before that first write); IoError when the disk refuses (and
  // then no file is left behind).
  static RunLog create(const std::string& path, bool overwrite = false);
  // An existing log, for a resumed run, read into memory; InputError if missing or not a
  // run log.
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

  // --- options changed by a resumed run, in the order they were changed
  struct OptionChange {
    int64_t step = 0;  // the step the resumed run continued from
    std::string option, from, to;
  };
  // Appends /option_changes/<n> and sets the option's root attribute to the new value.
  void record_option_change(const OptionChange& change);
  std::vector<OptionChange> option_changes() const;

  // --- /final summary scalars
  void set_final(const std::string& name, double value);
  void clear_final();  // removes /final (a finished run that is being extended)
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

  // Writes buffered rows and replaces the file on disk with the log as it stands. IoError
  // naming the file and the cause when the disk refuses (the file on disk then still holds
  // the previous flush, and this log in memory everything; a later flush may succeed).
  void flush();
  // flush() (with fsync) and close the log; further calls other than close() are errors.
  void close();

 private:
  RunLog(std::string path, h5::Handle file);       // read-only, on disk
  RunLog(std::string path, h5::MemoryFile mem, bool exists);  // writable, in memory
  void write_image(bool durable);
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
  h5::Handle file_;      // a read-only log
  h5::MemoryFile mem_;   // a writable log, written whole to path_ at each flush
  bool writable_ = false;
  bool written_ = false;                 // path_ holds this log (an earlier write, or opened from it)
  bool replace_on_first_write_ = false;  // create(..., overwrite)
  std::map<std::string, std::unique_ptr<Table>> tables_;  // unique_ptr: references stay valid
};

}  // namespace mtalab
