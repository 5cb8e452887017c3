#include "experiments/dist/nccl_chain.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "experiments/dist/communicator.h"

namespace mtalab::dist {

namespace {

// acc[i] += g[i]: one IEEE addition per element, the same bits as the backend's add.
template <class T>
__global__ void add_inplace(T* acc, const T* g, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    acc[i] = acc[i] + g[i];
}

template <class T>
ncclDataType_t nccl_type();
template <>
ncclDataType_t nccl_type<float>() { return ncclFloat32; }
template <>
ncclDataType_t nccl_type<double>() { return ncclFloat64; }

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CommError(std::string(what) + ": " + cudaGetErrorString(e));
}
void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw CommError(std::string(what) + ": " + ncclGetErrorString(r));
}

}  // namespace

struct NcclChain::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t computed = nullptr;  // recorded on the compute stream before each bucket
};

NcclChain::NcclChain(int device) : impl_(new Impl) {
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  ncclUniqueId id;
  if (rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  const std::string mine = rank() == 0 ? std::string((const char*)&id, sizeof id) : std::string();
  const std::string root = allgather(mine, "the NCCL communicator id")[0];
  std::memcpy(&id, root.data(), sizeof id);
  check_cuda(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cuda(cudaEventCreateWithFlags(&impl_->computed, cudaEventDisableTiming), "cudaEventCreate");
  check_nccl(ncclCommInitRank(&impl_->comm, size(), id, rank()), "ncclCommInitRank");
}

NcclChain::~NcclChain() {
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  if (impl_->computed) cudaEventDestroy(impl_->computed);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
  delete impl_;
}

// Polls the stream until the chain's operations finish, or aborts the communicator once
// --train.dist_timeout has passed or NCCL reports an asynchronous error (a peer died).
void NcclChain::wait(const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout());
  for (;;) {
    const cudaError_t q = cudaStreamQuery(impl_->stream);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) check_cuda(q, what);
    ncclResult_t async = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(impl_->comm, &async), "ncclCommGetAsyncError");
    if (async != ncclSuccess || std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(impl_->comm);
      impl_->comm = nullptr;
      throw CommError("rank " + std::to_string(rank()) + ": " + what + " did not complete within " +
                      std::to_string(timeout()) + " s (" + ncclGetErrorString(async) + "); NCCL communicator aborted");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// Queues the chain (see ordered_sum.h for the order) on the communication stream, behind
// what the compute stream has queued so far.
template <class T>
void NcclChain::chain(T* acc, const std::vector<const T*>& stash, size_t count) {
  const int r = rank(), n = size();
  if (n == 1) return;
  cudaStream_t s = impl_->stream;
  check_cuda(cudaEventRecord(impl_->computed, 0), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(s, impl_->computed, 0), "cudaStreamWaitEvent");
  if (r > 0) {
    check_nccl(ncclRecv(acc, count, nccl_type<T>(), r - 1, impl_->comm, s), "ncclRecv");
    for (const T* g : stash) add_inplace<T><<<256, 256, 0, s>>>(acc, g, count);
    check_cuda(cudaGetLastError(), "add_inplace");
  }
  if (r < n - 1) check_nccl(ncclSend(acc, count, nccl_type<T>(), r + 1, impl_->comm, s), "ncclSend");
  check_nccl(ncclBroadcast(acc, acc, count, nccl_type<T>(), n - 1, impl_->comm, s), "ncclBroadcast");
}

void NcclChain::ordered_sum(float* acc, const std::vector<const float*>& stash, size_t count) {
  chain(acc, stash, count);
  wait("the ordered gradient sum");
}
void NcclChain::ordered_sum(double* acc, const std::vector<const double*>& stash, size_t count) {
  chain(acc, stash, count);
  wait("the ordered gradient sum");
}
void NcclChain::enqueue(float* acc, const std::vector<const float*>& stash, size_t count) { chain(acc, stash, count); }
void NcclChain::enqueue(double* acc, const std::vector<const double*>& stash, size_t count) { chain(acc, stash, count); }
void NcclChain::wait_all(const char* what) { wait(what); }

}  // namespace mtalab::dist
