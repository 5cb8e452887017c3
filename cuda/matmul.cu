// CUDA batched matmul through cuBLAS (sgemm/dgemm, strided batched; bfloat16 through
// cublasGemmStridedBatchedEx on the tensor cores: bfloat16 A and B, float32 accumulation
// (CUBLAS_COMPUTE_32F), C in bfloat16 or float32 — the mixed-precision matmul's float32
// result comes straight out of the accumulators, never rounded to bfloat16). Row-major
// C = A B is column-major Cᵀ = Bᵀ Aᵀ, so the operands go in swapped; a transposed view
// (column-major in row-major terms) is passed as a transpose flag, never copied. Batch
// dims (broadcast ones have stride 0) are coalesced; what remains beyond one strided
// batch is a host loop of strided-batched calls. Full FP32 by default (no TF32;
// MTALAB_CUDA_TF32=1 allows it), so results stay within float32 rounding of the CPU's.
#include <cublas_v2.h>

#include <climits>
#include <cstdlib>
#include <mutex>

#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

void blas_check(cublasStatus_t s, const char* call, int64_t m, int64_t n, int64_t k, int64_t batch) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  std::string msg = std::string("cuda: ") + call + " (m=" + std::to_string(m) + ", n=" + std::to_string(n) +
                    ", k=" + std::to_string(k) + ", batch=" + std::to_string(batch) + "): " + cublasGetStatusString(s);
#if MTALAB_CUDA_EMU
  if (*emu::blas_error_detail()) msg += std::string(" (") + emu::blas_error_detail() + ")";
#endif
  throw std::runtime_error(msg);
}

cublasHandle_t handle(int device) {
  static std::mutex mu;
  static cublasHandle_t handles[64] = {};
  std::lock_guard<std::mutex> g(mu);
  if (device < 0 || device >= 64) throw std::invalid_argument("cuda: device index " + std::to_string(device) + " out of range");
  if (!handles[device]) {
    check(cudaSetDevice(device), "cudaSetDevice");
    blas_check(cublasCreate(&handles[device]), "cublasCreate", 0, 0, 0, 0);
    blas_check(cublasSetStream(handles[device], nullptr), "cublasSetStream", 0, 0, 0, 0);
    const char* tf32 = std::getenv("MTALAB_CUDA_TF32");
    const bool allow_tf32 = tf32 && std::string(tf32) == "1";
    blas_check(cublasSetMathMode(handles[device], allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
               "cublasSetMathMode", 0, 0, 0, 0);
  }
  return handles[device];
}

template <typename T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, double>) return CUDA_R_64F;
  else return CUDA_R_16BF;
}
template <typename TI>
const char* gemm_name() {
  if constexpr (std::is_same_v<TI, float>) return "cublasSgemmStridedBatched";
  else if constexpr (std::is_same_v<TI, double>) return "cublasDgemmStridedBatched";
  else return "cublasGemmStridedBatchedEx";
}

// C = alpha op(A) op(B) + beta C, column-major, strided batched: inputs TI, output TO.
template <typename TI, typename TO>
cublasStatus_t gemm_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const TI* A, int lda, long long sa, const TI* B, int ldb, long long sb, TO* C, int ldc,
                            long long sc, int batch, acc_t<TI> alpha = 1, acc_t<TI> beta = 0) {
  if constexpr (std::is_same_v<TI, float>)
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, &alpha, A, lda, sa, B, ldb, sb, &beta, C, ldc, sc, batch);
  else if constexpr (std::is_same_v<TI, double>)
    return cublasDgemmStridedBatched(h, ta, tb, m, n, k, &alpha, A, lda, sa, B, ldb, sb, &beta, C, ldc, sc, batch);
  else
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, sa, B, CUDA_R_16BF, ldb, sb,
                                      &beta, C, cuda_type<TO>(), ldc, sc, batch, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT);
}

int as_int(int64_t v, const char* what) {
  if (v > INT_MAX) throw std::invalid_argument(std::string("matmul on cuda: ") + what + " = " + std::to_string(v) + " exceeds cuBLAS's int range");
  return (int)v;
}

template <typename T, typename TO>
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
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), nd = out.dim();
  if (!out.numel()) return;
  if (K == 0) {
    check(cudaMemsetAsync(out.raw(), 0, out.numel() * sizeof(TO)), "matmul (k = 0)");
    return;
  }
  Shape batch(out.shape().begin(), out.shape().end() - 2), sa, sb, so;
  for (int64_t d = 0; d < nd - 2; ++d) {
    sa.push_back(a.strides()[d]);
    sb.push_back(b.strides()[d]);
    so.push_back(out.strides()[d]);
  }
  const Coalesced c = coalesce(batch, {sa, sb, so});  // at least one dim (size 1 if none)
  const int64_t inner = c.shape.back(), outer = shape_numel(c.shape) / std::max<int64_t>(inner, 1);
  const cublasHandle_t h = handle(out.device().index);
  const cublasOperation_t opa = la.trans ? CUBLAS_OP_T : CUBLAS_OP_N, opb = lb.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const T* ap = ptr<const T>(a);
  const T* bp = ptr<const T>(b);
  TO* op = ptr<TO>(out);
  const int m = as_int(N, "n"), n = as_int(M, "m"), k = as_int(K, "k"), batch_n = as_int(inner, "batch");
  for (int64_t i = 0; i < outer; ++i) {
    int64_t oa = 0, ob = 0, oo = 0, rest = i;
    for (int64_t d = (int64_t)c.shape.size() - 2; d >= 0; --d) {
      const int64_t q = rest % c.shape[d];
      rest /= c.shape[d];
      oa += q * c.strides[0][d];
      ob += q * c.strides[1][d];
      oo += q * c.strides[2][d];
    }
    // Cᵀ (N x M, ld N) = Bᵀ Aᵀ: B's row-major storage is Bᵀ column-major, and so on.
    blas_check(gemm_batched<T, TO>(h, opb, opa, m, n, k, bp + ob, as_int(lb.ld, "ldb"), c.strides[1].back(), ap + oa,
                                   as_int(la.ld, "lda"), c.strides[0].back(), op + oo, m, c.strides[2].back(), batch_n),
               gemm_name<T>(), M, N, K, inner);
  }
}

void matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  if (a.dtype() == DType::bf16) {
    if (out.dtype() == DType::f32) return matmul_typed<bfloat16, float>(a, b, out);
    if (out.dtype() == DType::bf16) return matmul_typed<bfloat16, bfloat16>(a, b, out);
    throw std::invalid_argument(std::string("matmul: bfloat16 operands take a bfloat16 or float32 output, got ") +
                                dtype_name(out.dtype()));
  }
  MTALAB_DISPATCH_FLOAT(out.dtype(), "matmul", [&] { matmul_typed<scalar_t, scalar_t>(a, b, out); });
}

// Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: operands swapped, the
// transpose flags kept.
template <typename T, typename TO>
void gemm_rm_typed(int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, acc_t<T> alpha, const T* A,
                   int64_t lda, int64_t sa, const T* B, int64_t ldb, int64_t sb, acc_t<T> beta, TO* C, int64_t ldc,
                   int64_t sc, int64_t batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  blas_check(gemm_batched<T, TO>(handle(device), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 as_int(N, "n"), as_int(M, "m"), as_int(K, "k"), B, as_int(ldb, "ldb"), sb, A,
                                 as_int(lda, "lda"), sa, C, as_int(ldc, "ldc"), sc, as_int(batch, "batch"), alpha,
                                 beta),
             gemm_name<T>(), M, N, K, batch);
}

}  // namespace

void gemm_rm(int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc, int64_t sc,
             int64_t batch) {
  gemm_rm_typed(device, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}
void gemm_rm(int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
             int64_t lda, int64_t sa, const double* B, int64_t ldb, int64_t sb, double beta, double* C, int64_t ldc,
             int64_t sc, int64_t batch) {
  gemm_rm_typed(device, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}
void gemm_rm(int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bfloat16* A,
             int64_t lda, int64_t sa, const bfloat16* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc,
             int64_t sc, int64_t batch) {
  gemm_rm_typed(device, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}
void gemm_rm(int device, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bfloat16* A,
             int64_t lda, int64_t sa, const bfloat16* B, int64_t ldb, int64_t sb, float beta, bfloat16* C,
             int64_t ldc, int64_t sc, int64_t batch) {
  gemm_rm_typed(device, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}

MTALAB_REGISTER_KERNEL(matmul_kernel, cuda, matmul);

}  // namespace mtalab::cuda
