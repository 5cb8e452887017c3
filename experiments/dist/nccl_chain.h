// The ordered gradient sum of dist/ordered_sum.h on GPUs, over NCCL: the same chain (rank r
// receives the prefix from r-1, adds its own micro-batch gradients in order, passes it on;
// the last rank broadcasts the total), on device buffers with ncclSend/ncclRecv/ncclBroadcast
// instead of host copies over MPI. ncclAllReduce is not used for the same reason as
// MPI_Allreduce: its ring/tree order of additions depends on the rank count and topology.
//
// Used by the trainer (dist/nccl_buckets.h) in a build with the real CUDA backend and NCCL,
// with --train.device cuda and several ranks. Compiled and linked with nvcc against the
// toolkit's NCCL; never executed in this project's CI (no GPU: there is no NCCL emulator).
// Waits poll the stream and NCCL's async error against --train.dist_timeout and abort the
// communicator on a timeout.
#pragma once
#include <cstddef>
#include <vector>

namespace mtalab::dist {

class NcclChain {
 public:
  // Collective over every rank (the NCCL id travels through dist::allgather), on CUDA device
  // `device` (the trainer's: chosen by the local rank).
  explicit NcclChain(int device);
  ~NcclChain();
  NcclChain(const NcclChain&) = delete;
  NcclChain& operator=(const NcclChain&) = delete;

  // `acc` (count floats on the device): on rank 0 its own fold; on return, on every rank, the
  // global sum. `stash`: this rank's micro-batch gradients (ranks > 0), added in order.
  void ordered_sum(float* acc, const std::vector<const float*>& stash, size_t count);
  void ordered_sum(double* acc, const std::vector<const double*>& stash, size_t count);

  // The same chain for one bucket, queued on the communication stream behind everything the
  // compute stream (the backend's stream 0) has queued so far, without waiting: backward goes
  // on while the bucket travels. The buffers must stay alive until wait_all() returns.
  void enqueue(float* acc, const std::vector<const float*>& stash, size_t count);
  void enqueue(double* acc, const std::vector<const double*>& stash, size_t count);
  // Waits for every queued chain.
  void wait_all(const char* what);

 private:
  template <class T>
  void chain(T* acc, const std::vector<const T*>& stash, size_t count);
  void wait(const char* what);
  struct Impl;
  Impl* impl_;
};

}  // namespace mtalab::dist
