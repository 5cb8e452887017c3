// CUDA copies between any two layouts and dtypes: contiguous same-type copies go to
// cudaMemcpy; everything else is one thread per element reading and writing through
// both tensors' strides (coalesced first, so a transpose is a 2-d walk).
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

template <typename S, typename D>
__global__ void copy_kernel_t(const S* s, D* d, Strided<2> it, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[2];
    it.offsets(i, off);
    d[off[1]] = (D)s[off[0]];
  }
}

template <typename S, typename D>
void copy_typed(const Tensor& src, const Tensor& dst) {
  const int64_t n = src.numel();
  const Strided<2> it = make_strided<2>(src.shape(), {src.strides(), dst.strides()}, "copy");
  launch("copy", copy_kernel_t<S, D>, grid_for(n), kThreads, 0, ptr<const S>(src), ptr<D>(dst), it, n);
}

template <typename S>
void copy_from(const Tensor& src, const Tensor& dst) {
  MTALAB_DISPATCH_ALL(dst.dtype(), [&] { copy_typed<S, type_t>(src, dst); });
}

void copy(const Tensor& src, const Tensor& dst) {
  if (src.shape() != dst.shape())
    throw std::invalid_argument("copy: source " + shape_str(src.shape()) + " vs destination " +
                                shape_str(dst.shape()));
  if (!src.numel()) return;
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    check(cudaMemcpyAsync(dst.raw(), src.raw(), src.numel() * dtype_size(src.dtype()), cudaMemcpyDeviceToDevice),
          "copy (device to device)");
    return;
  }
  MTALAB_DISPATCH_ALL(src.dtype(), [&] { copy_from<type_t>(src, dst); });
}

}  // namespace

MTALAB_REGISTER_KERNEL(copy_kernel, cuda, copy);

}  // namespace mtalab::cuda
