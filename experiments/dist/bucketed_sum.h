// The ordered gradient sum of dist/ordered_sum.h, per bucket of parameters and overlapped
// with the last micro-batch's backward (--train.overlap_reduce, --train.bucket_mb).
//
// The parameters are grouped, in reverse order (the order backward finishes them: the last
// layers first), into buckets of about bucket_mb megabytes of gradients. As soon as
// backward has produced every gradient of a bucket (GradReadyHook, autograd/grad_ready_hook.h)
// the bucket enters the chain: rank 0 sends its fold of the bucket, rank r adds its own
// micro-batch gradients in order to the prefix it received and passes it on, the last rank
// sends the total to every rank. The chain's order of additions is per element, so cutting
// the gradients into buckets changes no bit: the result is still one process's
// ((g_0 + g_1) + g_2) + ... . Every receive of the step is posted before backward starts
// and every send is nonblocking; MPI progresses them whenever a gradient becomes final, so
// the exchange of the last layers' buckets runs while backward computes the first layers'.
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/tensor.h"
#include "experiments/dist/communicator.h"
#include "experiments/dist/ordered_sum.h"

namespace mtalab::dist {

// Parameter indices per bucket: consecutive parameters from the last, each bucket closed once
// its gradients reach `bytes` (at least one parameter per bucket) or, under ZeRO-1, where the
// next parameter has another owner (`owner` per parameter, dist/zero_shard.h).
std::vector<std::vector<size_t>> make_buckets(const std::vector<Tensor>& params, double bytes,
                                              const std::vector<int>& owner = {});

// The bookkeeping both transports share: which bucket each parameter is in, which of the
// last micro-batch's gradients are final, and this rank's contributions to a bucket.
class GradientBuckets {
 public:
  // `part`: this rank's fold (rank 0) or stash (other ranks) of the micro-batches before
  // the last one; the last one's gradients arrive through ready(). `owner`: per parameter, the
  // one rank that needs its total (ZeRO-1; empty: every rank).
  GradientBuckets(const std::vector<Tensor>& params, const std::vector<std::vector<size_t>>& buckets, StepPart& part,
                  int64_t step, const std::vector<int>& owner = {});
  virtual ~GradientBuckets() = default;
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;
  // Parameter i's gradient of the last micro-batch is final (from a GradReadyHook).
  void ready(size_t i);
  // After backward: the parameters never reported had no gradient; completes the exchange
  // and returns the total per parameter (undefined: no micro-batch reached it).
  std::vector<Tensor> finish();

 protected:
  struct Bucket {
    std::vector<size_t> members;
    std::vector<Tensor> params;  // shapes, dtypes, devices of the members
    size_t waiting = 0;          // members whose gradient is not final yet
    int owner = -1;              // the rank that gets the total (-1: every rank)
  };
  virtual void complete(size_t b) = 0;  // every gradient of bucket b is final
  virtual void progress() {}            // after each ready(): move what can move, never wait
  virtual std::vector<Tensor> totals() = 0;
  // Rank 0: its fold of bucket b plus the last micro-batch (member order).
  std::vector<Tensor> rank0_fold(size_t b);
  // Other ranks: this rank's micro-batch gradients of member m of bucket b, in order.
  std::vector<Tensor> contributions(size_t b, size_t m) const;

  std::vector<Tensor> params_;
  StepPart& part_;
  std::vector<Bucket> buckets_;
  std::string what_;

 private:
  std::vector<Tensor> last_;  // the last micro-batch's gradients
  std::vector<bool> taken_;
  std::vector<size_t> bucket_of_;  // per parameter
};

// Over MPI (host copies): every receive of the step is posted before backward starts and
// every send is nonblocking; progress() runs on each final gradient, so the chain moves
// during backward on the one thread (MPI_THREAD_FUNNELED is enough). Under ZeRO-1 the last
// rank sends a bucket's total to its owner only (a reduce-scatter in the chain's order);
// the other ranks' totals of it stay undefined.
class BucketedSum final : public GradientBuckets {
 public:
  BucketedSum(const std::vector<Tensor>& params, const std::vector<std::vector<size_t>>& buckets, StepPart& part,
              int64_t step, const std::vector<int>& owner = {});

 private:
  struct Wire {
    bool sent = false;
    std::vector<char> prefix, total, out;  // receive buffers and the message this rank sent
    std::vector<Tensor> sum;               // what this rank sent (the last rank: the total)
    Request prefix_req = -1, total_req = -1;
    std::vector<Request> send_reqs;
  };
  void complete(size_t b) override {}
  void progress() override;
  std::vector<Tensor> totals() override;
  void forward(size_t b);

  std::vector<Wire> wire_;
};

}  // namespace mtalab::dist
