// The ordered gradient sum of dist/ordered_sum.h on GPUs, over NCCL: the same chain (rank r
// receives the prefix from r-1, adds its own micro-batch gradients in order, passes it on;
// the last rank broadcasts the total), on device buffers with ncclSend/ncclRecv/ncclBroadcast
// instead of host copies over MPI. ncclAllReduce is not used for the same reason as
// MPI_Allreduce: its ring/tree order of additions depends on the rank count and topology.
//
// STATUS: compiled and linked with nvcc against the toolkit's NCCL in CI (the nvcc check
// library, never loaded); never executed here (no GPU) and not yet called by the trainer,
// which sends host copies of device gradients over MPI. Waits poll the stream and NCCL's
// async error against --train.dist_timeout and abort the communicator on a timeout.
#pragma once
#include <cstddef>
#include <vector>

namespace mtalab::dist {

class NcclChain {
 public:
  // Collective over every rank (the NCCL id travels through dist::allgather); selects the
  // GPU by the local rank.
  NcclChain();
  ~NcclChain();
  NcclChain(const NcclChain&) = delete;
  NcclChain& operator=(const NcclChain&) = delete;

  // `acc` (count floats on the device): on rank 0 its own fold; on return, on every rank, the
  // global sum. `stash`: this rank's micro-batch gradients (ranks > 0), added in order.
  void ordered_sum(float* acc, const std::vector<const float*>& stash, size_t count);
  void ordered_sum(double* acc, const std::vector<const double*>& stash, size_t count);

 private:
  template <class T>
  void run(T* acc, const std::vector<const T*>& stash, size_t count);
  void wait(const char* what);
  struct Impl;
  Impl* impl_;
};

}  // namespace mtalab::dist
