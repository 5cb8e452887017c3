// The emulator's device memory, the runtime API of cuda_runtime.h, and the cuBLAS
// stand-in of cublas_v2.h (see emu.h).
#include <cblas.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "autograd/bfloat16.h"
#include "cublas_v2.h"
#include "cuda_runtime.h"

namespace mtalab::emu {
namespace {

// Live allocations by base address: kernels' pointer arguments, copies and cuBLAS
// matrices are checked against them.
struct Allocations {
  std::mutex mu;
  std::map<uintptr_t, size_t> live;
  size_t bytes = 0;
};
Allocations& allocations() {
  static Allocations a;
  return a;
}

thread_local cudaError_t g_last_error = cudaSuccess;
cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

}  // namespace

void* device_alloc(size_t nbytes) {
  void* p = nullptr;
  // Exact-size blocks (an ASan build then reports an access one past the end).
  if (posix_memalign(&p, 256, std::max<size_t>(nbytes, 1))) return nullptr;
  std::memset(p, 0xff, nbytes);  // NaN in float and double: a GPU does not zero new memory
  Allocations& a = allocations();
  std::lock_guard<std::mutex> g(a.mu);
  a.live[(uintptr_t)p] = nbytes;
  a.bytes += nbytes;
  return p;
}

bool device_free(void* p) {
  Allocations& a = allocations();
  {
    std::lock_guard<std::mutex> g(a.mu);
    auto it = a.live.find((uintptr_t)p);
    if (it == a.live.end()) return false;
    a.bytes -= it->second;
    a.live.erase(it);
  }
  std::free(p);
  return true;
}

bool is_device_range(const void* p, size_t nbytes) {
  Allocations& a = allocations();
  std::lock_guard<std::mutex> g(a.mu);
  const uintptr_t u = (uintptr_t)p;
  auto it = a.live.upper_bound(u);
  if (it == a.live.begin()) return false;
  --it;
  return u >= it->first && u + nbytes <= it->first + std::max<size_t>(it->second, 1);
}

size_t device_bytes_in_use() {
  Allocations& a = allocations();
  std::lock_guard<std::mutex> g(a.mu);
  return a.bytes;
}

void check_pointer_arg(const Launch& l, int index, const void* p) {
  if (p && !is_device_range(p, 0))
    throw KernelError("kernel '" + std::string(l.name) + "' " + shape_str(l) + ": argument " + std::to_string(index) +
                      " is a pointer into no device allocation (a host pointer?)");
}

}  // namespace mtalab::emu

using namespace mtalab::emu;

// ---- runtime API -------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : record(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device != 0) return record(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof *p);
  std::strcpy(p->name, "mtalab CUDA emulator (CPU fibers)");
  p->totalGlobalMem = (size_t)16 << 30;
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = 227 * 1024;
  p->maxThreadsPerBlock = 1024;
  p->multiProcessorCount = 1;
  p->warpSize = 32;
  p->major = 9;
  p->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t nbytes) {
  *p = device_alloc(nbytes);
  return *p ? cudaSuccess : record(cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  return device_free(p) ? cudaSuccess : record(cudaErrorInvalidDevicePointer);
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  const bool dd = is_device_range(dst, n), sd = is_device_range(src, n);
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dd && !sd; break;
    case cudaMemcpyDeviceToHost: ok = !dd && sd; break;
    case cudaMemcpyDeviceToDevice: ok = dd && sd; break;
    case cudaMemcpyHostToHost: ok = !dd && !sd; break;
    case cudaMemcpyDefault: break;
  }
  if (!ok) return record(cudaErrorInvalidValue);
  if (n) std::memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, n, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t n) {
  if (!is_device_range(p, n)) return record(cudaErrorInvalidValue);
  std::memset(p, value, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t) { return cudaMemset(p, value, n); }
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = (size_t)16 << 30;
  *free_bytes = *total_bytes - std::min(*total_bytes, device_bytes_in_use());
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last_error; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}

// ---- cuBLAS stand-in -----------------------------------------------------------------------
struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {
thread_local std::string g_blas_detail;

cublasStatus_t blas_fail(const std::string& call, const std::string& why) {
  g_blas_detail = call + ": " + why;
  return CUBLAS_STATUS_INVALID_VALUE;
}

// Checks one operand: `rows` x `cols` stored column-major with leading dimension ld,
// batch entries `stride` apart, all inside one device allocation.
bool operand_ok(const std::string& call, const char* name, const void* p, size_t elem, int rows, int cols, int ld,
                long long stride, int batch, cublasStatus_t& st) {
  if (ld < std::max(1, rows)) {
    st = blas_fail(call, std::string("ld") + name + " = " + std::to_string(ld) + " is less than the " +
                             std::to_string(rows) + " rows it holds");
    return false;
  }
  if (!rows || !cols || !batch) return true;
  if (stride < 0) {
    st = blas_fail(call, std::string("stride") + name + " = " + std::to_string(stride) + " is negative");
    return false;
  }
  const size_t last = (size_t)(cols - 1) * ld + (rows - 1) + (size_t)stride * (batch - 1);
  if (!is_device_range(p, (last + 1) * elem)) {
    st = blas_fail(call, std::string("matrix ") + name + " (" + std::to_string(rows) + " x " + std::to_string(cols) +
                             ", ld " + std::to_string(ld) + ", stride " + std::to_string(stride) + ", batch " +
                             std::to_string(batch) + ") reaches past the device allocation it starts in");
    return false;
  }
  return true;
}

// The argument checks every GEMM call makes: sizes, then each operand's layout and extent
// (element sizes in bytes: a, b, c).
cublasStatus_t check_gemm(const std::string& call, cublasHandle_t h, bool tA, bool tB, int m, int n, int k,
                          const void* A, size_t ea, int lda, long long sa, const void* B, size_t eb, int ldb,
                          long long sb, const void* C, size_t ec, int ldc, long long sc, int batch) {
  g_blas_detail.clear();
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || k < 0 || batch < 0)
    return blas_fail(call, "negative size m = " + std::to_string(m) + ", n = " + std::to_string(n) + ", k = " +
                               std::to_string(k) + ", batch = " + std::to_string(batch));
  cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
  if (!operand_ok(call, "a", A, ea, tA ? k : m, tA ? m : k, lda, sa, batch, st) ||
      !operand_ok(call, "b", B, eb, tB ? n : k, tB ? k : n, ldb, sb, batch, st) ||
      !operand_ok(call, "c", C, ec, m, n, ldc, sc, batch, st))
    return st;
  return CUBLAS_STATUS_SUCCESS;
}

template <typename T>
cublasStatus_t gemm(const char* fname, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, const T* alpha, const T* A, int lda, long long sa, const T* B, int ldb, long long sb,
                    const T* beta, T* C, int ldc, long long sc, int batch) {
  const bool tA = ta != CUBLAS_OP_N, tB = tb != CUBLAS_OP_N;
  const cublasStatus_t st =
      check_gemm(fname, h, tA, tB, m, n, k, A, sizeof(T), lda, sa, B, sizeof(T), ldb, sb, C, sizeof(T), ldc, sc, batch);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  const auto TA = tA ? CblasTrans : CblasNoTrans, TB = tB ? CblasTrans : CblasNoTrans;
  for (int i = 0; i < batch; ++i) {
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemm(CblasColMajor, TA, TB, m, n, k, *alpha, A + i * sa, lda, B + i * sb, ldb, *beta, C + i * sc, ldc);
    else
      cblas_dgemm(CblasColMajor, TA, TB, m, n, k, *alpha, A + i * sa, lda, B + i * sb, ldb, *beta, C + i * sc, ldc);
  }
  return CUBLAS_STATUS_SUCCESS;
}

size_t data_type_size(cudaDataType t) {
  switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_64F: return 8;
    case CUDA_R_16F:
    case CUDA_R_16BF: return 2;
  }
  return 0;
}

// A `rows` x `cols` column-major bfloat16 matrix (leading dimension ld) as float32, ld kept.
std::vector<float> widen_bf16(const void* p, int rows, int cols, int ld) {
  std::vector<float> w(cols ? (size_t)(cols - 1) * ld + rows : 0);
  const auto* b = static_cast<const mtalab::bfloat16*>(p);
  for (int c = 0; c < cols; ++c)
    for (int r = 0; r < rows; ++r) w[(size_t)c * ld + r] = (float)b[(size_t)c * ld + r];
  return w;
}

// cublasGemmEx / cublasGemmStridedBatchedEx: float32 and float64 go to gemm(); bfloat16 A
// and B are widened (exact), multiplied with float32 accumulation, and C (bfloat16 or
// float32) is read for beta and written, rounded once.
cublasStatus_t gemm_ex(const char* fname, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                       int k, const void* alpha, const void* A, cudaDataType at, int lda, long long sa, const void* B,
                       cudaDataType bt, int ldb, long long sb, const void* beta, void* C, cudaDataType ct, int ldc,
                       long long sc, int batch, cublasComputeType_t compute) {
  const std::string call = fname;
  const bool f32 = at == CUDA_R_32F && bt == CUDA_R_32F && ct == CUDA_R_32F &&
                   (compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_FAST_TF32);
  const bool f64 = at == CUDA_R_64F && bt == CUDA_R_64F && ct == CUDA_R_64F && compute == CUBLAS_COMPUTE_64F;
  const bool bf16 = at == CUDA_R_16BF && bt == CUDA_R_16BF && (ct == CUDA_R_16BF || ct == CUDA_R_32F) &&
                    compute == CUBLAS_COMPUTE_32F;
  if (!f32 && !f64 && !bf16) {
    g_blas_detail = call + ": unsupported type combination A " + std::to_string(at) + ", B " + std::to_string(bt) +
                    ", C " + std::to_string(ct) + ", compute " + std::to_string(compute);
    return h ? CUBLAS_STATUS_NOT_SUPPORTED : CUBLAS_STATUS_NOT_INITIALIZED;
  }
  if (f32)
    return gemm(fname, h, ta, tb, m, n, k, (const float*)alpha, (const float*)A, lda, sa, (const float*)B, ldb, sb,
                (const float*)beta, (float*)C, ldc, sc, batch);
  if (f64)
    return gemm(fname, h, ta, tb, m, n, k, (const double*)alpha, (const double*)A, lda, sa, (const double*)B, ldb,
                sb, (const double*)beta, (double*)C, ldc, sc, batch);
  const bool tA = ta != CUBLAS_OP_N, tB = tb != CUBLAS_OP_N;
  const cublasStatus_t st = check_gemm(call, h, tA, tB, m, n, k, A, 2, lda, sa, B, 2, ldb, sb, C,
                                       data_type_size(ct), ldc, sc, batch);
  if (st != CUBLAS_STATUS_SUCCESS || !m || !n) return st;
  const auto TA = tA ? CblasTrans : CblasNoTrans, TB = tB ? CblasTrans : CblasNoTrans;
  const float al = *(const float*)alpha, be = *(const float*)beta;
  for (int i = 0; i < batch; ++i) {
    const std::vector<float> a = widen_bf16((const char*)A + 2 * i * sa, tA ? k : m, tA ? m : k, lda);
    const std::vector<float> b = widen_bf16((const char*)B + 2 * i * sb, tB ? n : k, tB ? k : n, ldb);
    if (ct == CUDA_R_32F) {
      float* c = (float*)C + i * sc;
      cblas_sgemm(CblasColMajor, TA, TB, m, n, k, al, a.data(), lda, b.data(), ldb, be, c, ldc);
      continue;
    }
    auto* c = (mtalab::bfloat16*)C + i * sc;
    std::vector<float> cw = widen_bf16(c, m, n, ldc);
    cblas_sgemm(CblasColMajor, TA, TB, m, n, k, al, a.data(), lda, b.data(), ldb, be, cw.data(), ldc);
    for (int col = 0; col < n; ++col)
      for (int r = 0; r < m; ++r) c[(size_t)col * ldc + r] = mtalab::bfloat16(cw[(size_t)col * ldc + r]);
  }
  return CUBLAS_STATUS_SUCCESS;
}
}  // namespace

const char* mtalab::emu::blas_error_detail() { return g_blas_detail.c_str(); }

cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  return gemm("cublasSgemm", h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
cublasStatus_t cublasDgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const double* alpha, const double* A, int lda, const double* B, int ldb, const double* beta,
                           double* C, int ldc) {
  return gemm("cublasDgemm", h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long sa,
                                         const float* B, int ldb, long long sb, const float* beta, float* C, int ldc,
                                         long long sc, int batch) {
  return gemm("cublasSgemmStridedBatched", h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}
cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double* alpha, const double* A, int lda, long long sa,
                                         const double* B, int ldb, long long sb, const double* beta, double* C,
                                         int ldc, long long sc, int batch) {
  return gemm("cublasDgemmStridedBatched", h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                            int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  return gemm_ex("cublasGemmEx", h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1,
                 compute);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType at, int lda,
                                          long long sa, const void* B, cudaDataType bt, int ldb, long long sb,
                                          const void* beta, void* C, cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t) {
  return gemm_ex("cublasGemmStridedBatchedEx", h, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C, ct,
                 ldc, sc, batch, compute);
}
