// Tensor: a strided view over shared storage, plus the autograd fields.
//
// Storage is allocated by the device's backend (autograd/backend.h); code outside a
// backend reads raw memory only through data<T>(), which refuses non-CPU tensors.
#pragma once
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/dtype.h"

namespace mtalab {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

// One allocation on one device. Views share it.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// Live allocation counters, per device kind: tests use them to prove the graph is freed.
struct MemoryStats {
  int64_t live_bytes = 0;
  int64_t live_storages = 0;
  int64_t peak_bytes = 0;
};
MemoryStats memory_stats(DeviceKind kind = DeviceKind::cpu);

class Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape, strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;  // null for leaves
};

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = kCPU;
  bool requires_grad = false;
  TensorOptions() = default;
  TensorOptions(DType d) : dtype(d) {}
  TensorOptions(DType d, Device dev, bool rg = false) : dtype(d), device(dev), requires_grad(rg) {}
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  // A fresh contiguous tensor with uninitialised contents.
  static Tensor empty(const Shape& shape, TensorOptions opts = {});

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int64_t dim() const { return (int64_t)impl().shape.size(); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  TensorOptions options() const { return {dtype(), device()}; }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }

  // Raw element pointer (offset applied). CPU only, dtype-checked.
  template <typename T>
  T* data() const;
  // Raw pointer for backends: any device, no dtype check.
  void* raw() const;

  // --- autograd -----------------------------------------------------------
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool r = true);
  Tensor grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }
  void set_grad(const Tensor& g) { impl().grad = g.impl_; }
  void zero_grad() { impl().grad.reset(); }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  // Reverse-mode sweep from this tensor. Without `grad`, this must hold one element.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Same storage, cut from the graph.
  Tensor detach() const;

  // --- conversions ----------------------------------------------------------
  Tensor to(Device d) const;
  Tensor to(DType t) const;
  Tensor contiguous() const;  // differentiable; returns *this when already contiguous
  Tensor clone() const;       // differentiable copy
  double item() const;        // one element, any dtype, as double
  template <typename T>
  std::vector<T> to_vector() const;  // host copy in logical (row-major) order
  std::string str(int64_t max_per_dim = 6) const;

  // --- views (differentiable; see autograd/ops.h for the rest) --------------
  Tensor reshape(const Shape& s) const;
  Tensor view(const Shape& s) const;  // requires a compatible layout, never copies
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;
  Tensor expand(const Shape& s) const;
  Tensor unsqueeze(int64_t d) const;
  Tensor squeeze(int64_t d) const;

  TensorImpl& impl() const {
    if (!impl_) throw std::logic_error("use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

using TensorList = std::vector<Tensor>;

// Normalises a possibly negative dimension index; throws naming `op` if out of range.
int64_t wrap_dim(int64_t d, int64_t ndim, const char* op);

// --- creation ---------------------------------------------------------------
Tensor zeros(const Shape& s, TensorOptions o = {});
Tensor ones(const Shape& s, TensorOptions o = {});
Tensor full(const Shape& s, double v, TensorOptions o = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor arange(int64_t n, TensorOptions o = {});  // 0..n-1
Tensor scalar_tensor(double v, TensorOptions o = {});
template <typename T>
Tensor from_vector(const std::vector<T>& v, const Shape& s, TensorOptions o);
Tensor from_vector(const std::vector<float>& v, const Shape& s);
Tensor from_vector(const std::vector<double>& v, const Shape& s);

// --- grad mode --------------------------------------------------------------
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace mtalab
