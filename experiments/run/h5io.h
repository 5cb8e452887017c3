// A thin RAII layer over the HDF5 C API, shared by run logs and checkpoints.
// HDF5 never prints its error stack here: every failure becomes an mtalab::InputError naming
// the file, the operation and HDF5's own innermost message (files are user input: a corrupt,
// truncated or mismatched one is something the user fixes).
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace mtalab::h5 {

// Turns off HDF5's automatic error printing for the calling thread (Debian's build is
// thread-safe, so the setting is per thread). Every function here calls it first; call it
// yourself before raw H5* calls.
void quiet();

// Owns one HDF5 identifier of any kind (file, group, dataset, space, type, attribute,
// property list) and drops it with H5Idec_ref, which closes it at the last reference.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& o) noexcept : id_(o.release()) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.release();
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  operator hid_t() const { return id_; }  // so a Handle passes straight to H5* calls
  explicit operator bool() const { return id_ >= 0; }
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }
  void reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// --- errors --------------------------------------------------------------------------
// Name of the file holding `obj` ("<hdf5 file>" when unknown).
std::string file_name(hid_t obj);
// Throws InputError "<file of obj>: <what> (HDF5: <innermost error message>)".
[[noreturn]] void fail_in(hid_t obj, const std::string& what);
[[noreturn]] void fail_file(const std::string& path, const std::string& what);
// Wraps a fresh id, or fail_in(where, what) when the call that made it failed.
Handle own(hid_t id, hid_t where, const std::string& what);
void check(herr_t status, hid_t where, const std::string& what);

// --- files ---------------------------------------------------------------------------
enum class Mode { read, write };
// Opens an existing file; InputError when it is missing, not HDF5 or unreadable.
// `kind` says what the file should be ("run log", "checkpoint") for the messages.
Handle open_file(const std::string& path, Mode mode, const std::string& kind);
// Closes and reports errors, unlike the Handle destructor, which cannot throw.
void close_file(Handle& file, const std::string& path);

// --- files held in memory --------------------------------------------------------------
// HDF5's core driver without a backing store: HDF5 reads and writes only memory, so a full
// disk or a failing write can never strike half-way through HDF5's own I/O (where it would
// leave a file that HDF5 itself cannot open again). The owner writes image() to disk
// (atomic_file.h: replace_file), whole, after each flush.
class MemoryFile {
 public:
  MemoryFile();
  MemoryFile(MemoryFile&&) noexcept;
  MemoryFile& operator=(MemoryFile&&) noexcept;
  ~MemoryFile();
  // A new, empty file. `name` is what H5Fget_name (and so every error message) reports:
  // pass the path the image will be written to.
  static MemoryFile create(const std::string& name);
  // An existing file read whole into memory, open for writing (the file on disk is never
  // written through it); InputError when it is not a readable HDF5 file.
  static MemoryFile open(const std::string& path);
  hid_t id() const { return file_; }
  explicit operator bool() const { return static_cast<bool>(file_); }
  // Flushes HDF5's caches into memory and returns the file's bytes (up to its end of
  // allocated space); valid until the next HDF5 call on this file.
  std::pair<const void*, size_t> image();
  // Closes the file and frees its memory (every object in it is closed too).
  void close();

  struct Buffer;  // the core driver's memory, as its allocation callbacks report it

 private:
  std::unique_ptr<Buffer> buffer_;  // declared first: outlives file_, whose close frees it
  Handle file_;
};

// Files written by mtalab carry root attributes mtalab_format (e.g. "checkpoint") and
// mtalab_format_version; check_format throws InputError unless both match.
constexpr const char* kFormatAttr = "mtalab_format";
constexpr const char* kVersionAttr = "mtalab_format_version";
void stamp_format(hid_t file, const std::string& format, int64_t version);
void check_format(hid_t file, const std::string& path, const std::string& format, int64_t version);

// --- links ---------------------------------------------------------------------------
// True when every component of `path` exists (H5Lexists alone fails on a missing parent).
bool exists(hid_t loc, const std::string& path);
bool is_group(hid_t loc, const std::string& path);  // false when missing
Handle open_group(hid_t loc, const std::string& path);
Handle require_group(hid_t loc, const std::string& path);  // opens, or creates with parents
Handle open_dataset(hid_t loc, const std::string& path);
std::vector<std::string> children(hid_t group);  // link names, sorted by name
// Every object path below `group`, relative to it ("train", "train/loss", ...).
std::vector<std::string> all_paths(hid_t group);

// --- attributes (scalars: int64, float64 or UTF-8 string) ---------------------------
using AttrValue = std::variant<int64_t, double, std::string>;
void write_attr(hid_t obj, const std::string& name, const AttrValue& value);  // replaces
std::optional<AttrValue> read_attr(hid_t obj, const std::string& name);     // nullopt if absent
std::map<std::string, AttrValue> read_attrs(hid_t obj);
void write_strings_attr(hid_t obj, const std::string& name, const std::vector<std::string>& v);
std::vector<std::string> read_strings_attr(hid_t obj, const std::string& name);

// --- datasets ------------------------------------------------------------------------
// Memory type (native) and file type (little-endian, so files move between machines).
template <class T> hid_t mem_type();
template <class T> hid_t file_type();
template <> hid_t mem_type<float>();
template <> hid_t mem_type<double>();
template <> hid_t mem_type<int64_t>();
template <> hid_t file_type<float>();
template <> hid_t file_type<double>();
template <> hid_t file_type<int64_t>();

int64_t numel(const std::vector<int64_t>& shape);  // std::invalid_argument on a negative dim
std::vector<int64_t> shape_of(hid_t dset);          // {} for a scalar dataset

// A fixed-size contiguous dataset at `path` (parents created), replacing any existing one.
void write_dataset(hid_t loc, const std::string& path, hid_t mem, hid_t file,
                   const std::vector<int64_t>& shape, const void* data);
// An empty dataset [0, row_shape...] growing along dimension 0, chunked by `chunk_rows`.
Handle create_extendible(hid_t loc, const std::string& path, hid_t file,
                         const std::vector<int64_t>& row_shape, int64_t chunk_rows);
// Grows dimension 0 by `rows` and writes them from `data` (row-major).
void append_rows(hid_t dset, hid_t mem, int64_t rows, const void* data);
void resize_rows(hid_t dset, int64_t rows);
// The whole dataset, converted by HDF5 to T.
template <class T> std::vector<T> read_dataset(hid_t dset);

}  // namespace mtalab::h5
