// The bucketed, overlapped gradient sum of dist/bucketed_sum.h on GPUs: each complete bucket
// is flattened into one device buffer per micro-batch and its chain queued on NCCL's own
// stream (dist/nccl_chain.h) behind the compute stream, so it travels while backward goes on.
//
// Built only with the real CUDA backend and NCCL (MTALAB_HAVE_NCCL); never run in this
// project's CI (no GPU). float32 and float64 gradients; other dtypes use the MPI host path.
// Which gradients are defined at all is agreed over MPI after the step (a parameter no
// micro-batch reached stays without a gradient, as in one process); a rank whose micro-batch
// missed a parameter another reached contributes zeros, which can differ from one process
// only in the sign of a zero (not the case for mtalab's models: every micro-batch reaches
// every parameter).
#pragma once
#include <memory>
#include <string>

#include "experiments/dist/bucketed_sum.h"
#include "experiments/dist/nccl_chain.h"

namespace mtalab::dist {

// The chain for this run's ranks, or null where NCCL cannot carry it (a build without NCCL,
// a CPU run, one rank, a dtype other than float32/float64).
// Collective: every rank calls it at the same point.
std::shared_ptr<NcclChain> make_nccl_chain(bool on_cuda, DType dtype, int device);
// The sum of one step through `chain` (see above); the arguments as for BucketedSum.
std::unique_ptr<GradientBuckets> nccl_bucketed_sum(NcclChain& chain, const std::vector<Tensor>& params,
                                                   const std::vector<std::vector<size_t>>& buckets, StepPart& part,
                                                   int64_t step);
// "NCCL" or why the gradients go through host copies over MPI instead (for the run log).
std::string nccl_status(bool on_cuda, DType dtype);

}  // namespace mtalab::dist
