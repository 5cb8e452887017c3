// CPU memory, copies, fills and the thread count.
#include <cblas.h>
#include <omp.h>

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "autograd/cpu/parallel.h"
#include "autograd/kernels.h"

namespace mtalab {

namespace {
void* cpu_alloc(size_t n, int) {
  // Keep freed activation buffers in the heap instead of returning them to the kernel
  // with munmap: every training step reallocates the same sizes, and fresh pages cost a
  // page fault and a zeroing each.
  static const bool tuned = [] {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)tuned;
  // 64-byte alignment for vector loads; size rounded up as aligned_alloc requires.
  void* p = std::aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  return p;
}
void cpu_free(void* p, size_t, int) { std::free(p); }
void cpu_copy(void* dst, const void* src, size_t n, int) { std::memcpy(dst, src, n); }
}  // namespace

Allocator& allocator(DeviceKind k) {
  static Allocator tables[kNumDeviceKinds] = {{cpu_alloc, cpu_free, cpu_copy, cpu_copy}, {}};
  // Registration (cuda_backend_init) fills the table before any allocation uses it.
  return tables[(int)k];
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: need at least 1 thread, got " + std::to_string(n));
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}
int get_num_threads() { return omp_get_max_threads(); }

namespace cpu {

template <typename S, typename D>
static void copy_typed(const Tensor& src, const Tensor& dst) {
  const S* s = static_cast<const S*>(src.raw());
  D* d = static_cast<D*>(dst.raw());
  const int64_t n = src.numel();
  if (src.is_contiguous() && dst.is_contiguous()) {
    parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) d[i] = (D)s[i];
    });
    return;
  }
  const Coalesced it = coalesce(src.shape(), {src.strides(), dst.strides()});
  StridedIndex si(it.shape, it.strides[0]), di(it.shape, it.strides[1]);
  const int64_t inner = it.shape.back();
  const int64_t ss = it.strides[0].back(), ds = it.strides[1].back();
  const int64_t rows = inner ? n / inner : 0;
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const S* sp = s + si.row_offset(r);
      D* dp = d + di.row_offset(r);
      for (int64_t j = 0; j < inner; ++j) dp[j * ds] = (D)sp[j * ss];
    }
  });
}

template <typename S>
static void copy_from(const Tensor& src, const Tensor& dst) {
  switch (dst.dtype()) {
    case DType::f32: return copy_typed<S, float>(src, dst);
    case DType::f64: return copy_typed<S, double>(src, dst);
    case DType::i32: return copy_typed<S, int32_t>(src, dst);
    case DType::i64: return copy_typed<S, int64_t>(src, dst);
  }
}

static void copy(const Tensor& src, const Tensor& dst) {
  if (src.shape() != dst.shape())
    throw std::invalid_argument("copy: source " + shape_str(src.shape()) + " vs destination " +
                                shape_str(dst.shape()));
  switch (src.dtype()) {
    case DType::f32: return copy_from<float>(src, dst);
    case DType::f64: return copy_from<double>(src, dst);
    case DType::i32: return copy_from<int32_t>(src, dst);
    case DType::i64: return copy_from<int64_t>(src, dst);
  }
}

template <typename T>
static void fill_typed(const Tensor& dst, double v) {
  T* d = static_cast<T*>(dst.raw());
  const T tv = (T)v;
  parallel_for(dst.numel(), 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) d[i] = tv;
  });
}
static void fill(const Tensor& dst, double v) {
  switch (dst.dtype()) {
    case DType::f32: return fill_typed<float>(dst, v);
    case DType::f64: return fill_typed<double>(dst, v);
    case DType::i32: return fill_typed<int32_t>(dst, v);
    case DType::i64: return fill_typed<int64_t>(dst, v);
  }
}

}  // namespace cpu

KernelTable<CopyFn> copy_kernel("copy", cpu::copy);
KernelTable<FillFn> fill_kernel("fill", cpu::fill);

}  // namespace mtalab
