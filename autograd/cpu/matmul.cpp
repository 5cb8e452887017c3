// CPU batched matmul through OpenBLAS. A matrix whose last two dims are laid out
// row-major (stride[-1] == 1) goes in as is; one laid out column-major (a transposed
// view, stride[-2] == 1) goes in with CblasTrans: no copies either way. Only layouts
// BLAS cannot express are made contiguous first.
#include <cblas.h>

#include "autograd/cpu/parallel.h"
#include "autograd/bf16_staging.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* b, int64_t ldb,
          T* c, int64_t ldc) {
  const auto TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  else
    cblas_dgemm(CblasRowMajor, TA, TB, M, N, K, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}

template <typename T>
void matmul_typed(Tensor a, Tensor b, const Tensor& out) {
  MatLayout la{}, lb{};
  if (!blas_layout(a, la)) {
    a = a.contiguous();
    blas_layout(a, la);
  }
  if (!blas_layout(b, lb)) {
    b = b.contiguous();
    blas_layout(b, lb);
  }
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const int64_t nd = out.dim();
  Shape batch(out.shape().begin(), out.shape().end() - 2);
  const int64_t nbatch = shape_numel(batch);
  const T* ap = static_cast<const T*>(a.raw());
  const T* bp = static_cast<const T*>(b.raw());
  T* op = static_cast<T*>(out.raw());
  auto offset = [&](const Tensor& t, int64_t i) {
    int64_t off = 0;
    for (int64_t d = nd - 3; d >= 0; --d) {
      off += (i % batch[d]) * t.strides()[d];
      i /= batch[d];
    }
    return off;
  };
  if (K == 0) {
    for (int64_t i = 0; i < out.numel(); ++i) op[i] = 0;
    return;
  }
  auto one = [&](int64_t i) {
    gemm<T>(la.trans, lb.trans, M, N, K, ap + offset(a, i), la.ld, bp + offset(b, i), lb.ld, op + i * M * N, N);
  };
  // Many small matrices: one per thread, BLAS single-threaded inside the region (the
  // OpenMP build of OpenBLAS runs serially when called from a parallel region). Few
  // large ones: BLAS threads each call. In between (attention maps: 32 x 256x256x64),
  // splitting the batch beats BLAS's own threading of each call as long as every thread
  // gets the same number of matrices, or enough of them that one extra matters little.
  const int64_t nt = omp_get_max_threads();
  const bool even_split = nbatch % nt == 0 || nbatch >= 4 * nt;
  const bool per_thread =
      nbatch >= 2 && (M * N * K < (int64_t)1 << 21 || (nt > 1 && even_split && M * N * K < (int64_t)1 << 27));
  if (per_thread) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nbatch; ++i) one(i);
  } else {
    for (int64_t i = 0; i < nbatch; ++i) one(i);
  }
}

// bfloat16 operands: staged to float32 (exact) and multiplied by sgemm, the float32 result
// written as it is (a float32 output) or rounded once (bfloat16). Debian's OpenBLAS 0.3.21
// has no bfloat16 GEMM (cblas_sbgemm needs a BUILD_BFLOAT16 build).
void matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  if (a.dtype() == DType::bf16) {
    if (out.dtype() != DType::f32 && out.dtype() != DType::bf16)
      throw std::invalid_argument(std::string("matmul: bfloat16 operands take a bfloat16 or float32 output, got ") +
                                  dtype_name(out.dtype()));
    Bf16Staging s;
    matmul(s.in(a), s.in(b), s.out(out));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(out.dtype(), "matmul", [&] { matmul_typed<scalar_t>(a, b, out); });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
MTALAB_REGISTER_KERNEL(matmul_kernel, cpu, cpu::matmul);
}
