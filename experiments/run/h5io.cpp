#include "experiments/run/h5io.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "autograd/errors.h"

namespace mtalab::h5 {

namespace fs = std::filesystem;

void quiet() {
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

void Handle::reset() {
  if (id_ >= 0) {
    quiet();
    H5Idec_ref(id_);
  }
  id_ = H5I_INVALID_HID;
}

// --- errors --------------------------------------------------------------------------

namespace {

// Walking upward starts at the function that detected the error: the most specific message
// ("unable to open file: name = ..., errno = 2, ...", "truncated file: eof = ...").
herr_t take_innermost(unsigned n, const H5E_error2_t* e, void* out) {
  if (n == 0 && e->desc) *static_cast<std::string*>(out) = e->desc;
  return 0;
}

// Must run before any other API call: each one clears the error stack on entry.
std::string take_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

[[noreturn]] void raise(const std::string& file, const std::string& what, const std::string& detail) {
  throw InputError(file + ": " + what + (detail.empty() ? "" : " (HDF5: " + detail + ")"));
}

}  // namespace

std::string file_name(hid_t obj) {
  quiet();
  ssize_t n = obj >= 0 ? H5Fget_name(obj, nullptr, 0) : -1;
  if (n <= 0) return "<hdf5 file>";
  std::string name(static_cast<size_t>(n), '\0');
  H5Fget_name(obj, name.data(), name.size() + 1);
  return name;
}

void fail_in(hid_t obj, const std::string& what) {
  std::string detail = take_error();
  // Name the object too when it is not the file itself: "cannot resize a dataset [/train/loss]".
  std::string where;
  H5I_type_t kind = H5Iget_type(obj);
  if (kind == H5I_DATASET || kind == H5I_GROUP) {
    ssize_t n = H5Iget_name(obj, nullptr, 0);
    if (n > 0) {
      where.resize(static_cast<size_t>(n));
      H5Iget_name(obj, where.data(), where.size() + 1);
    }
  }
  raise(file_name(obj), where.empty() || where == "/" ? what : what + " [" + where + "]", detail);
}

void fail_file(const std::string& path, const std::string& what) {
  std::string detail = take_error();
  raise(path, what, detail);
}

Handle own(hid_t id, hid_t where, const std::string& what) {
  if (id < 0) fail_in(where, what);
  return Handle(id);
}

void check(herr_t status, hid_t where, const std::string& what) {
  if (status < 0) fail_in(where, what);
}

// --- files ---------------------------------------------------------------------------

namespace {

Handle access_plist(Mode mode) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS));
  if (!fapl) fail_file("<hdf5>", "cannot create a file access property list");
  if (mode == Mode::write) {
    // 1.8 object formats (superblock v2, checksummed object headers, dense attribute
    // storage, v1 B-tree chunk index). Not "latest": the 1.10 superblock v3 records "open
    // for writing", and a MemoryFile's image is taken while the file is open, so every file
    // written would carry that mark and need h5clear before HDF5 opens it; v2 ignores it.
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
  } else {
    // A reader (report, eval, a monitor) must not be refused because another process (h5py,
    // a second reader) holds HDF5's lock on the file. Readers never modify the file, and the
    // writer replaces it whole (MemoryFile), so what a reader opens is always complete.
    H5Pset_file_locking(fapl, false, true);
  }
  return fapl;
}

}  // namespace

Handle open_file(const std::string& path, Mode mode, const std::string& kind) {
  quiet();
  const std::string expected = "; expected an mtalab " + kind;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(path + ": file does not exist" + expected);
  if (fs::is_directory(path, ec)) throw InputError(path + ": is a directory" + expected);
  // A FIFO or a device would block (or never end) inside HDF5's first read.
  if (!fs::is_regular_file(path, ec)) throw InputError(path + ": is not a regular file" + expected);
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 < 0) fail_file(path, "cannot read the file" + expected);
  if (is_hdf5 == 0) throw InputError(path + ": not an HDF5 file" + expected);
  Handle fapl = access_plist(mode);
  hid_t f = H5Fopen(path.c_str(), mode == Mode::write ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
  // HDF5 shares a file opened twice in one process and then insists on the same locking
  // setting: a reader of a log this process writes retries with the default one.
  if (f < 0 && mode == Mode::read) f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) fail_file(path, "cannot open the HDF5 file (corrupt or truncated?)" + expected);
  return Handle(f);
}

void close_file(Handle& file, const std::string& path) {
  quiet();
  if (!file) return;
  if (H5Fclose(file.release()) < 0) fail_file(path, "cannot close the file (data may be lost)");
}

// --- files held in memory --------------------------------------------------------------

// The core driver allocates its memory through these callbacks, which is how image() knows
// where the bytes are without H5Fget_file_image: that one clears the superblock's status
// byte in its copy without updating the checksum, and the copy then fails to open.
struct MemoryFile::Buffer {
  void* data = nullptr;
  size_t size = 0;
};

namespace {

bool is_file_op(H5FD_file_image_op_t op) {
  return op == H5FD_FILE_IMAGE_OP_FILE_OPEN || op == H5FD_FILE_IMAGE_OP_FILE_RESIZE;
}

void* image_malloc(size_t size, H5FD_file_image_op_t op, void* udata) {
  void* p = std::malloc(size ? size : 1);
  if (p && is_file_op(op)) *static_cast<MemoryFile::Buffer*>(udata) = {p, size};
  return p;
}

void* image_memcpy(void* dest, const void* src, size_t size, H5FD_file_image_op_t, void*) {
  return std::memcpy(dest, src, size);
}

void* image_realloc(void* ptr, size_t size, H5FD_file_image_op_t op, void* udata) {
  void* p = std::realloc(ptr, size ? size : 1);
  if (p && is_file_op(op)) *static_cast<MemoryFile::Buffer*>(udata) = {p, size};
  return p;
}

herr_t image_free(void* ptr, H5FD_file_image_op_t, void* udata) {
  auto* b = static_cast<MemoryFile::Buffer*>(udata);
  if (ptr && ptr == b->data) *b = {};
  std::free(ptr);
  return 0;
}

void* udata_copy(void* udata) { return udata; }  // one Buffer per file, owned by MemoryFile
herr_t udata_free(void*) { return 0; }

Handle memory_access_plist(MemoryFile::Buffer* buffer) {
  Handle fapl = access_plist(Mode::write);
  // Nothing on disk is written through this driver: a reader must never be locked out.
  H5Pset_file_locking(fapl, false, true);
  constexpr size_t kIncrement = 1 << 20;  // the memory grows in steps of 1 MiB
  if (H5Pset_fapl_core(fapl, kIncrement, /*backing_store=*/0) < 0)
    fail_file("<hdf5>", "cannot select HDF5's in-memory driver");
  H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy, image_realloc, image_free,
                                    udata_copy,   udata_free,   buffer};
  if (H5Pset_file_image_callbacks(fapl, &cb) < 0) fail_file("<hdf5>", "cannot set file image callbacks");
  // Closing the file closes every object still open in it, so its memory is freed at
  // close() and never after the Buffer that tracks it is gone.
  if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) fail_file("<hdf5>", "cannot set the close degree");
  return fapl;
}

}  // namespace

MemoryFile::MemoryFile() : buffer_(std::make_unique<Buffer>()) {}
MemoryFile::MemoryFile(MemoryFile&& o) noexcept = default;
MemoryFile& MemoryFile::operator=(MemoryFile&& o) noexcept {
  if (this != &o) {
    file_.reset();
    buffer_ = std::move(o.buffer_);
    file_ = std::move(o.file_);
  }
  return *this;
}
MemoryFile::~MemoryFile() { file_.reset(); }

MemoryFile MemoryFile::create(const std::string& name) {
  quiet();
  MemoryFile m;
  Handle fapl = memory_access_plist(m.buffer_.get());
  hid_t f = H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (f < 0) fail_file(name, "cannot create the file in memory");
  m.file_ = Handle(f);
  return m;
}

MemoryFile MemoryFile::open(const std::string& path) {
  quiet();
  MemoryFile m;
  Handle fapl = memory_access_plist(m.buffer_.get());
  // The core driver reads the whole file into memory and never writes to it.
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl);
  if (f < 0) fail_file(path, "cannot open the HDF5 file (corrupt or truncated?)");
  m.file_ = Handle(f);
  return m;
}

namespace {

// The end of allocated space from a version 2 superblock (the 1.8 format these files use):
// signature(8) version(1) offset size(1) length size(1) flags(1) base(8) extension(8)
// end-of-file address(8) ... The core driver's own size is rounded up to its growth step,
// and H5Fget_eoa refuses drivers without SWMR support; 0 when the layout is not this one.
size_t superblock_eoa(const unsigned char* p, size_t size) {
  static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (size < 48 || std::memcmp(p, sig, 8) != 0 || p[8] != 2 || p[9] != 8) return 0;
  uint64_t base = 0, eoa = 0;
  for (int i = 7; i >= 0; --i) {
    base = base << 8 | p[12 + i];
    eoa = eoa << 8 | p[28 + i];
  }
  return base == 0 ? static_cast<size_t>(eoa) : 0;
}

}  // namespace

std::pair<const void*, size_t> MemoryFile::image() {
  quiet();
  check(H5Fflush(file_, H5F_SCOPE_GLOBAL), file_, "cannot flush");
  hsize_t size = 0;
  check(H5Fget_filesize(file_, &size), file_, "cannot read the file's size");
  if (!buffer_->data || size > buffer_->size) fail_in(file_, "the in-memory file is smaller than its contents");
  const size_t eoa = superblock_eoa(static_cast<const unsigned char*>(buffer_->data), static_cast<size_t>(size));
  return {buffer_->data, eoa > 0 && eoa <= size ? eoa : static_cast<size_t>(size)};
}

void MemoryFile::close() {
  quiet();
  if (!file_) return;
  if (H5Fclose(file_.release()) < 0) fail_file("<hdf5 file in memory>", "cannot close the file");
}

void stamp_format(hid_t file, const std::string& format, int64_t version) {
  write_attr(file, kFormatAttr, format);
  write_attr(file, kVersionAttr, version);
}

void check_format(hid_t file, const std::string& path, const std::string& format, int64_t version) {
  const std::string want = "an mtalab " + format + " (format version " + std::to_string(version) + ")";
  auto f = read_attr(file, kFormatAttr);
  if (!f || !std::holds_alternative<std::string>(*f))
    throw InputError(path + ": no string attribute " + kFormatAttr + "; expected " + want);
  if (std::get<std::string>(*f) != format)
    throw InputError(path + ": is an mtalab " + std::get<std::string>(*f) + "; expected " + want);
  auto v = read_attr(file, kVersionAttr);
  if (!v || !std::holds_alternative<int64_t>(*v))
    throw InputError(path + ": no integer attribute " + kVersionAttr + "; expected " + want);
  if (std::get<int64_t>(*v) != version)
    throw InputError(path + ": " + format + " format version " + std::to_string(std::get<int64_t>(*v)) +
                     "; expected " + want);
}

// --- links ---------------------------------------------------------------------------

namespace {

Handle link_create_plist() {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE));
  if (!lcpl) fail_file("<hdf5>", "cannot create a link creation property list");
  H5Pset_create_intermediate_group(lcpl, 1);
  return lcpl;
}

}  // namespace

bool exists(hid_t loc, const std::string& path) {
  quiet();
  std::string prefix = !path.empty() && path[0] == '/' ? "/" : "";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) {
      if (!prefix.empty() && prefix.back() != '/') prefix += '/';
      prefix += path.substr(start, end - start);
      htri_t e = H5Lexists(loc, prefix.c_str(), H5P_DEFAULT);
      if (e < 0) fail_in(loc, "cannot look up " + prefix);
      if (e == 0) return false;
    }
    start = end + 1;
  }
  return true;
}

bool is_group(hid_t loc, const std::string& path) {
  if (!exists(loc, path)) return false;
  Handle obj = own(H5Oopen(loc, path.c_str(), H5P_DEFAULT), loc, "cannot open " + path);
  return H5Iget_type(obj) == H5I_GROUP;
}

Handle open_group(hid_t loc, const std::string& path) {
  quiet();
  return own(H5Gopen2(loc, path.c_str(), H5P_DEFAULT), loc, "cannot open group " + path);
}

Handle require_group(hid_t loc, const std::string& path) {
  if (exists(loc, path)) return open_group(loc, path);
  Handle lcpl = link_create_plist();
  return own(H5Gcreate2(loc, path.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT), loc,
             "cannot create group " + path);
}

Handle open_dataset(hid_t loc, const std::string& path) {
  quiet();
  return own(H5Dopen2(loc, path.c_str(), H5P_DEFAULT), loc, "cannot open dataset " + path);
}

namespace {

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

}  // namespace

std::vector<std::string> children(hid_t group) {
  quiet();
  std::vector<std::string> names;
  check(H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_link, &names), group,
        "cannot list a group");
  return names;
}

std::vector<std::string> all_paths(hid_t group) {
  quiet();
  std::vector<std::string> names;
  check(H5Lvisit(group, H5_INDEX_NAME, H5_ITER_INC, collect_link, &names), group,
        "cannot walk the file");
  return names;
}

// --- attributes ----------------------------------------------------------------------

namespace {

Handle utf8_string_type() {
  Handle t(H5Tcopy(H5T_C_S1));
  if (!t || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)
    fail_file("<hdf5>", "cannot make a string type");
  return t;
}

void delete_attr_if_present(hid_t obj, const std::string& name) {
  htri_t e = H5Aexists(obj, name.c_str());
  if (e < 0) fail_in(obj, "cannot look up attribute " + name);
  if (e > 0) check(H5Adelete(obj, name.c_str()), obj, "cannot replace attribute " + name);
}

}  // namespace

void write_attr(hid_t obj, const std::string& name, const AttrValue& value) {
  quiet();
  delete_attr_if_present(obj, name);  // the type may change, so replace rather than rewrite
  Handle space = own(H5Screate(H5S_SCALAR), obj, "cannot make a scalar dataspace");
  const std::string what = "cannot write attribute " + name;
  std::visit(
      [&](const auto& v) {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::string>) {
          Handle type = utf8_string_type();
          Handle a = own(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), obj, what);
          const char* p = v.c_str();
          check(H5Awrite(a, type, &p), obj, what);
        } else {
          Handle a = own(H5Acreate2(obj, name.c_str(), file_type<V>(), space, H5P_DEFAULT, H5P_DEFAULT),
                         obj, what);
          check(H5Awrite(a, mem_type<V>(), &v), obj, what);
        }
      },
      value);
}

namespace {

// Reads a string attribute of any layout (variable or fixed length) as `count` strings.
std::vector<std::string> read_string_values(hid_t obj, hid_t attr, hid_t file_t, size_t count,
                                            const std::string& what) {
  Handle mem = own(H5Tget_native_type(file_t, H5T_DIR_DEFAULT), obj, what);
  std::vector<std::string> out;
  if (H5Tis_variable_str(file_t) > 0) {
    std::vector<char*> ptrs(count, nullptr);
    herr_t st = H5Aread(attr, mem, ptrs.data());
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      H5free_memory(p);
    }
    check(st, obj, what);
  } else {
    size_t width = H5Tget_size(file_t);
    std::string buf(width * count, '\0');
    check(H5Aread(attr, mem, buf.data()), obj, what);
    for (size_t i = 0; i < count; ++i) {
      std::string s = buf.substr(i * width, width);
      out.push_back(s.substr(0, s.find('\0')));
    }
  }
  return out;
}

}  // namespace

std::optional<AttrValue> read_attr(hid_t obj, const std::string& name) {
  quiet();
  htri_t e = H5Aexists(obj, name.c_str());
  if (e < 0) fail_in(obj, "cannot look up attribute " + name);
  if (e == 0) return std::nullopt;
  const std::string what = "cannot read attribute " + name;
  Handle a = own(H5Aopen(obj, name.c_str(), H5P_DEFAULT), obj, what);
  Handle type = own(H5Aget_type(a), obj, what);
  Handle space = own(H5Aget_space(a), obj, what);
  if (H5Sget_simple_extent_npoints(space) != 1)
    throw InputError(file_name(obj) + ": attribute " + name + " is not a scalar; expected one value");
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: {
      int64_t v = 0;
      check(H5Aread(a, mem_type<int64_t>(), &v), obj, what);
      return v;
    }
    case H5T_FLOAT: {
      double v = 0;
      check(H5Aread(a, mem_type<double>(), &v), obj, what);
      return v;
    }
    case H5T_STRING:
      return read_string_values(obj, a, type, 1, what)[0];
    default:
      throw InputError(file_name(obj) + ": attribute " + name +
                       " has an unsupported type; expected an integer, float or string");
  }
}

namespace {

herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

}  // namespace

std::map<std::string, AttrValue> read_attrs(hid_t obj) {
  quiet();
  std::vector<std::string> names;
  check(H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_attr, &names), obj,
        "cannot list attributes");
  std::map<std::string, AttrValue> out;
  for (const auto& n : names) out.emplace(n, *read_attr(obj, n));
  return out;
}

void write_strings_attr(hid_t obj, const std::string& name, const std::vector<std::string>& v) {
  quiet();
  delete_attr_if_present(obj, name);
  const std::string what = "cannot write attribute " + name;
  hsize_t n = v.size();
  Handle space = own(H5Screate_simple(1, &n, nullptr), obj, what);
  Handle type = utf8_string_type();
  std::vector<const char*> ptrs;
  for (const auto& s : v) ptrs.push_back(s.c_str());
  Handle a = own(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), obj, what);
  check(H5Awrite(a, type, ptrs.data()), obj, what);
}

std::vector<std::string> read_strings_attr(hid_t obj, const std::string& name) {
  quiet();
  const std::string what = "cannot read attribute " + name;
  if (H5Aexists(obj, name.c_str()) <= 0)
    throw InputError(file_name(obj) + ": missing attribute " + name + "; expected a list of strings");
  Handle a = own(H5Aopen(obj, name.c_str(), H5P_DEFAULT), obj, what);
  Handle type = own(H5Aget_type(a), obj, what);
  Handle space = own(H5Aget_space(a), obj, what);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  if (H5Tget_class(type) != H5T_STRING || n < 0)
    throw InputError(file_name(obj) + ": attribute " + name + " is not a list of strings");
  return read_string_values(obj, a, type, static_cast<size_t>(n), what);
}

// --- datasets ------------------------------------------------------------------------

template <> hid_t mem_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t mem_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> hid_t mem_type<int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t file_type<float>() { return H5T_IEEE_F32LE; }
template <> hid_t file_type<double>() { return H5T_IEEE_F64LE; }
template <> hid_t file_type<int64_t>() { return H5T_STD_I64LE; }

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in an array shape");
    n *= d;
  }
  return n;
}

std::vector<int64_t> shape_of(hid_t dset) {
  quiet();
  Handle space = own(H5Dget_space(dset), dset, "cannot read a dataset's shape");
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) fail_in(dset, "cannot read a dataset's shape");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

namespace {

std::vector<hsize_t> to_hsize(const std::vector<int64_t>& shape) {
  numel(shape);  // rejects negative dimensions
  return std::vector<hsize_t>(shape.begin(), shape.end());
}

Handle make_space(hid_t where, const std::vector<hsize_t>& dims, const hsize_t* max = nullptr) {
  hid_t s = dims.empty() ? H5Screate(H5S_SCALAR)
                         : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), max);
  return own(s, where, "cannot make a dataspace");
}

}  // namespace

void write_dataset(hid_t loc, const std::string& path, hid_t mem, hid_t file,
                   const std::vector<int64_t>& shape, const void* data) {
  quiet();
  const std::string what = "cannot write dataset " + path;
  if (exists(loc, path)) check(H5Ldelete(loc, path.c_str(), H5P_DEFAULT), loc, what);
  Handle space = make_space(loc, to_hsize(shape));
  Handle lcpl = link_create_plist();
  Handle d = own(H5Dcreate2(loc, path.c_str(), file, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), loc, what);
  // An empty selection with no buffer is an error in some HDF5 versions: skip empty writes.
  if (numel(shape) > 0) check(H5Dwrite(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), loc, what);
}

Handle create_extendible(hid_t loc, const std::string& path, hid_t file,
                         const std::vector<int64_t>& row_shape, int64_t chunk_rows) {
  quiet();
  const std::string what = "cannot create dataset " + path;
  std::vector<hsize_t> dims = to_hsize(row_shape), max = dims, chunk = dims;
  for (hsize_t d : dims)
    if (d == 0) throw std::invalid_argument("extendible dataset " + path + " needs non-empty rows");
  dims.insert(dims.begin(), 0);
  max.insert(max.begin(), H5S_UNLIMITED);
  chunk.insert(chunk.begin(), static_cast<hsize_t>(std::max<int64_t>(chunk_rows, 1)));
  Handle space = make_space(loc, dims, max.data());
  // Uncompressed: chunks keep a fixed size and are rewritten in place at each flush, where
  // deflate would reallocate them and grow the file.
  Handle dcpl = own(H5Pcreate(H5P_DATASET_CREATE), loc, what);
  check(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), loc, what);
  Handle lcpl = link_create_plist();
  return own(H5Dcreate2(loc, path.c_str(), file, space, lcpl, dcpl, H5P_DEFAULT), loc, what);
}

void append_rows(hid_t dset, hid_t mem, int64_t rows, const void* data) {
  if (rows <= 0) return;
  std::vector<int64_t> shape = shape_of(dset);
  if (shape.empty()) throw std::invalid_argument("cannot append rows to a scalar dataset");
  std::vector<hsize_t> start(shape.size(), 0), count(shape.begin(), shape.end()), grown = count;
  start[0] = count[0];
  count[0] = static_cast<hsize_t>(rows);
  grown[0] += count[0];
  const std::string what = "cannot append to a dataset";
  check(H5Dset_extent(dset, grown.data()), dset, what);
  Handle file_space = own(H5Dget_space(dset), dset, what);
  check(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
        dset, what);
  Handle mem_space = make_space(dset, count);
  check(H5Dwrite(dset, mem, mem_space, file_space, H5P_DEFAULT, data), dset, what);
}

void resize_rows(hid_t dset, int64_t rows) {
  std::vector<int64_t> shape = shape_of(dset);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  dims.at(0) = static_cast<hsize_t>(rows);
  check(H5Dset_extent(dset, dims.data()), dset, "cannot resize a dataset");
}

template <class T>
std::vector<T> read_dataset(hid_t dset) {
  std::vector<T> out(static_cast<size_t>(numel(shape_of(dset))));
  if (!out.empty())
    check(H5Dread(dset, mem_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), dset,
          "cannot read a dataset");
  return out;
}

template std::vector<float> read_dataset<float>(hid_t);
template std::vector<double> read_dataset<double>(hid_t);
template std::vector<int64_t> read_dataset<int64_t>(hid_t);

}  // namespace mtalab::h5
