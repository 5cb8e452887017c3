#include "autograd/tensor.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <iomanip>
#include <sstream>

#include "autograd/backend.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"

namespace mtalab {

// ---- dtype / device ----------------------------------------------------------
size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::bf16: return 2;
  }
  return 0;
}
const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::bf16: return "bfloat16";
  }
  return "?";
}
DType parse_dtype(const std::string& s) {
  if (s == "float32" || s == "f32" || s == "float") return DType::f32;
  if (s == "float64" || s == "f64" || s == "double") return DType::f64;
  if (s == "int32" || s == "i32") return DType::i32;
  if (s == "int64" || s == "i64") return DType::i64;
  if (s == "bfloat16" || s == "bf16") return DType::bf16;
  throw std::invalid_argument("unknown dtype '" + s + "' (expected float32, float64, bfloat16, int32 or int64)");
}
Device Device::parse(const std::string& s) {
  if (s == "cpu") return Device(DeviceKind::cpu, 0);
  if (s == "cuda") return Device(DeviceKind::cuda, 0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string n = s.substr(5);
    if (!n.empty() && n.find_first_not_of("0123456789") == std::string::npos)
      return Device(DeviceKind::cuda, std::stoi(n));
  }
  throw std::invalid_argument("unknown device '" + s + "' (expected cpu, cuda or cuda:N)");
}
std::string Device::str() const {
  return kind == DeviceKind::cpu ? "cpu" : "cuda:" + std::to_string(index);
}

// ---- shapes ------------------------------------------------------------------
std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}
Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = (int64_t)s.size() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}
int64_t wrap_dim(int64_t d, int64_t ndim, const char* op) {
  int64_t w = d < 0 ? d + ndim : d;
  if (w < 0 || w >= std::max<int64_t>(ndim, 1))
    throw std::invalid_argument(std::string(op) + ": dimension " + std::to_string(d) +
                                " out of range for a " + std::to_string(ndim) + "-d tensor");
  return w;
}

// ---- storage and memory counters ---------------------------------------------
namespace {
struct Counters {
  std::atomic<int64_t> bytes{0}, storages{0}, peak{0};
};
Counters g_counters[kNumDeviceKinds];
thread_local bool g_grad_enabled = true;
}  // namespace

Storage::Storage(size_t n, Device d) : nbytes(n), device(d) {
  ensure_backend(d);
  data = allocator(d.kind).allocate(std::max<size_t>(n, 1), d.index);
  auto& c = g_counters[(int)d.kind];
  int64_t now = (c.bytes += (int64_t)n);
  c.storages++;
  int64_t p = c.peak.load();
  while (now > p && !c.peak.compare_exchange_weak(p, now)) {
  }
}
Storage::~Storage() {
  allocator(device.kind).deallocate(data, std::max<size_t>(nbytes, 1), device.index);
  auto& c = g_counters[(int)device.kind];
  c.bytes -= (int64_t)nbytes;
  c.storages--;
}
MemoryStats memory_stats(DeviceKind k) {
  auto& c = g_counters[(int)k];
  return {c.bytes.load(), c.storages.load(), c.peak.load()};
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

// ---- Tensor ------------------------------------------------------------------
Tensor Tensor::empty(const Shape& shape, TensorOptions o) {
  for (auto d : shape)
    if (d < 0) throw std::invalid_argument("empty: negative size in shape " + shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(o.dtype), o.device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = o.dtype;
  impl->requires_grad = o.requires_grad;
  return Tensor(impl);
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] != 1 && strides()[i] != acc) return false;
    acc *= shape()[i];
  }
  return true;
}

void* Tensor::raw() const {
  return static_cast<char*>(impl().storage->data) + offset() * (int64_t)dtype_size(dtype());
}

template <typename T>
static constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::f32;
  if constexpr (std::is_same_v<T, double>) return DType::f64;
  if constexpr (std::is_same_v<T, int32_t>) return DType::i32;
  if constexpr (std::is_same_v<T, bfloat16>) return DType::bf16;
  return DType::i64;
}

template <typename T>
T* Tensor::data() const {
  if (!device().is_cpu())
    throw std::logic_error("data<T>(): tensor lives on " + device().str() +
                           "; only CPU tensors expose raw memory outside a backend");
  if (dtype() != dtype_of<T>())
    throw std::invalid_argument(std::string("data<T>(): tensor is ") + dtype_name(dtype()) +
                                ", asked for " + dtype_name(dtype_of<T>()));
  return static_cast<T*>(raw());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;
template bfloat16* Tensor::data<bfloat16>() const;

Tensor& Tensor::set_requires_grad(bool r) {
  if (r && !is_floating(dtype()))
    throw std::invalid_argument(std::string("set_requires_grad: only float tensors can require grad, got ") +
                                dtype_name(dtype()));
  if (!is_leaf()) throw std::logic_error("set_requires_grad: only leaves can be marked");
  impl().requires_grad = r;
  return *this;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = this->impl().storage;
  impl->shape = shape();
  impl->strides = strides();
  impl->offset = offset();
  impl->dtype = dtype();
  return Tensor(impl);
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  // Cross-device copies go through host memory; gradients do not flow across devices.
  Tensor src = detach().contiguous();
  Tensor out = Tensor::empty(shape(), {dtype(), d});
  const size_t n = numel() * dtype_size(dtype());
  if (src.device().is_cpu()) {
    allocator(d.kind).copy_from_host(out.raw(), src.raw(), n, d.index);
  } else if (d.is_cpu()) {
    allocator(src.device().kind).copy_to_host(out.raw(), src.raw(), n, src.device().index);
  } else {
    return src.to(kCPU).to(d);
  }
  return out;
}
Tensor Tensor::to(DType t) const { return to_dtype(*this, t); }
Tensor Tensor::contiguous() const { return mtalab::contiguous(*this); }
Tensor Tensor::clone() const { return mul(*this, 1.0); }

double Tensor::item() const {
  if (numel() != 1)
    throw std::invalid_argument("item(): tensor of shape " + shape_str(shape()) + " has " +
                                std::to_string(numel()) + " elements, expected 1");
  Tensor c = detach().to(kCPU);
  switch (dtype()) {
    case DType::f32: return *c.data<float>();
    case DType::f64: return *c.data<double>();
    case DType::i32: return *c.data<int32_t>();
    case DType::i64: return (double)*c.data<int64_t>();
    case DType::bf16: return (float)*c.data<bfloat16>();
  }
  return 0;
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = detach().to(kCPU).to(dtype_of<T>()).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<bfloat16> Tensor::to_vector<bfloat16>() const;

std::string Tensor::str(int64_t max_per_dim) const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> v = to_vector<double>();
  std::ostringstream os;
  os << std::setprecision(5);
  const Shape& s = shape();
  std::function<void(int64_t, int64_t)> rec = [&](int64_t d, int64_t off) {
    if (d == (int64_t)s.size()) {
      os << v[off];
      return;
    }
    int64_t step = 1;
    for (size_t k = d + 1; k < s.size(); ++k) step *= s[k];
    os << "[";
    for (int64_t i = 0; i < s[d]; ++i) {
      if (s[d] > max_per_dim && i == max_per_dim / 2) {
        os << "..., ";
        i = s[d] - max_per_dim / 2;
      }
      rec(d + 1, off + i * step);
      if (i + 1 < s[d]) os << ", ";
    }
    os << "]";
  };
  rec(0, 0);
  os << ", shape=" << shape_str(s) << ", dtype=" << dtype_name(dtype()) << ", device=" << device().str();
  if (requires_grad()) os << ", requires_grad";
  if (grad_fn()) os << ", grad_fn=" << grad_fn()->name();
  return "tensor(" + os.str() + ")";
}
std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

Tensor Tensor::reshape(const Shape& s) const { return mtalab::reshape(*this, s); }
Tensor Tensor::permute(const std::vector<int64_t>& d) const { return mtalab::permute(*this, d); }
Tensor Tensor::transpose(int64_t a, int64_t b) const { return mtalab::transpose(*this, a, b); }
Tensor Tensor::slice(int64_t d, int64_t a, int64_t b) const { return mtalab::slice(*this, d, a, b); }
Tensor Tensor::expand(const Shape& s) const { return mtalab::expand(*this, s); }
Tensor Tensor::view(const Shape& s) const {
  if (!is_contiguous())
    throw std::invalid_argument("view: tensor of shape " + shape_str(shape()) +
                                " is not contiguous; use reshape() (which may copy)");
  return mtalab::reshape(*this, s);
}
Tensor Tensor::unsqueeze(int64_t d) const {
  Shape s = shape();
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  s.insert(s.begin() + d, 1);
  return mtalab::reshape(*this, s);
}
Tensor Tensor::squeeze(int64_t d) const {
  Shape s = shape();
  d = wrap_dim(d, dim(), "squeeze");
  if (s[d] != 1)
    throw std::invalid_argument("squeeze: dimension " + std::to_string(d) + " of shape " +
                                shape_str(s) + " is not 1");
  s.erase(s.begin() + d);
  return mtalab::reshape(*this, s);
}

// ---- creation ----------------------------------------------------------------
Tensor full(const Shape& s, double v, TensorOptions o) {
  Tensor t = Tensor::empty(s, {o.dtype, o.device});
  fill_kernel(o.device)(t, v);
  if (o.requires_grad) t.set_requires_grad(true);
  return t;
}
Tensor zeros(const Shape& s, TensorOptions o) { return full(s, 0.0, o); }
Tensor ones(const Shape& s, TensorOptions o) { return full(s, 1.0, o); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.options()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.options()); }
Tensor scalar_tensor(double v, TensorOptions o) { return full({}, v, o); }
Tensor arange(int64_t n, TensorOptions o) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (double)i;
  return from_vector(v, {n}, o);
}
template <typename T>
Tensor from_vector(const std::vector<T>& v, const Shape& s, TensorOptions o) {
  if ((int64_t)v.size() != shape_numel(s))
    throw std::invalid_argument("from_vector: " + std::to_string(v.size()) +
                                " values do not fill shape " + shape_str(s));
  Tensor host = Tensor::empty(s, {dtype_of<T>(), kCPU});
  if (!v.empty()) std::memcpy(host.raw(), v.data(), v.size() * sizeof(T));
  Tensor t = host.to(o.dtype).to(o.device);
  if (o.requires_grad) t.set_requires_grad(true);
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, TensorOptions);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector<bfloat16>(const std::vector<bfloat16>&, const Shape&, TensorOptions);
Tensor from_vector(const std::vector<float>& v, const Shape& s) { return from_vector(v, s, {DType::f32}); }
Tensor from_vector(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, {DType::f64}); }

}  // namespace mtalab
