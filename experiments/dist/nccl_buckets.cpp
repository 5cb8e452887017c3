#include "experiments/dist/nccl_buckets.h"

#include <stdexcept>

#include "autograd/ops.h"

namespace mtalab::dist {

#ifdef MTALAB_HAVE_NCCL
namespace {
bool nccl_dtype(DType d) { return d == DType::f32 || d == DType::f64; }

class NcclBucketedSum final : public GradientBuckets {
 public:
  NcclBucketedSum(NcclChain& chain, const std::vector<Tensor>& params, const std::vector<std::vector<size_t>>& buckets,
                  StepPart& part, int64_t step);

 private:
  struct Flat {
    Tensor acc;                 // the running sum, then the total (count elements)
    std::vector<Tensor> stash;  // this rank's micro-batches, flattened (ranks > 0)
    std::vector<char> defined;  // per member: this rank has a gradient for it
  };
  void complete(size_t b) override;
  std::vector<Tensor> totals() override;
  Tensor flatten(size_t b, const std::vector<Tensor>& grads) const;

  NcclChain& chain_;
  std::vector<Flat> flat_;
};

}  // namespace

std::string nccl_status(bool on_cuda, DType dtype) {
  if (!on_cuda) return "host (a CPU run)";
  if (!nccl_dtype(dtype)) return "host copies over MPI (NCCL carries float32 and float64 gradients here)";
  return "NCCL";
}

std::shared_ptr<NcclChain> make_nccl_chain(bool on_cuda, DType dtype, int device) {
  if (size() == 1 || !on_cuda || !nccl_dtype(dtype)) return nullptr;
  return std::make_shared<NcclChain>(device);
}

std::unique_ptr<GradientBuckets> nccl_bucketed_sum(NcclChain& chain, const std::vector<Tensor>& params,
                                                   const std::vector<std::vector<size_t>>& buckets, StepPart& part,
                                                   int64_t step) {
  return std::make_unique<NcclBucketedSum>(chain, params, buckets, part, step);
}

NcclBucketedSum::NcclBucketedSum(NcclChain& chain, const std::vector<Tensor>& params,
                                 const std::vector<std::vector<size_t>>& buckets, StepPart& part, int64_t step)
    : GradientBuckets(params, buckets, part, step), chain_(chain), flat_(buckets.size()) {}

// One buffer for the bucket: each member's gradient flattened, zeros for an undefined one.
Tensor NcclBucketedSum::flatten(size_t b, const std::vector<Tensor>& grads) const {
  NoGradGuard ng;
  TensorList parts;
  const Bucket& k = buckets_[b];
  for (size_t m = 0; m < k.members.size(); ++m)
    parts.push_back(grads[m].defined() ? reshape(grads[m].contiguous(), {-1})
                                       : zeros({k.params[m].numel()}, k.params[m].options()));
  return concat(parts, 0);
}

void NcclBucketedSum::complete(size_t b) {
  const Bucket& k = buckets_[b];
  Flat& f = flat_[b];
  f.defined.assign(k.members.size(), 0);
  if (rank() == 0) {
    const std::vector<Tensor> fold = rank0_fold(b);
    for (size_t m = 0; m < fold.size(); ++m) f.defined[m] = fold[m].defined();
    f.acc = flatten(b, fold);
  } else {
    const size_t micro = contributions(b, 0).size();
    for (size_t j = 0; j < micro; ++j) {
      std::vector<Tensor> g;
      for (size_t m = 0; m < k.members.size(); ++m) {
        g.push_back(contributions(b, m)[j]);
        f.defined[m] |= g.back().defined();
      }
      f.stash.push_back(flatten(b, g));
    }
    f.acc = zeros_like(f.stash[0]);  // receives the prefix
  }
  const size_t count = (size_t)f.acc.numel();
  if (f.acc.dtype() == DType::f64) {
    std::vector<const double*> s;
    for (const Tensor& t : f.stash) s.push_back(static_cast<const double*>(t.raw()));
    chain_.enqueue(static_cast<double*>(f.acc.raw()), s, count);
  } else {
    std::vector<const float*> s;
    for (const Tensor& t : f.stash) s.push_back(static_cast<const float*>(t.raw()));
    chain_.enqueue(static_cast<float*>(f.acc.raw()), s, count);
  }
}

std::vector<Tensor> NcclBucketedSum::totals() {
  chain_.wait_all(what_.c_str());
  // Defined anywhere = defined in the total (the host path's rule), agreed over MPI.
  std::string mine;
  for (const Flat& f : flat_) mine.append(f.defined.begin(), f.defined.end());
  std::string any(mine.size(), 0);
  for (const std::string& s : allgather(mine, "which gradients are defined"))
    for (size_t j = 0; j < any.size() && j < s.size(); ++j) any[j] |= s[j];
  std::vector<Tensor> total(params_.size());
  size_t j = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    int64_t at = 0;
    for (size_t m = 0; m < buckets_[b].members.size(); ++m, ++j) {
      const Tensor& p = buckets_[b].params[m];
      if (any[j]) total[buckets_[b].members[m]] = reshape(slice(flat_[b].acc, 0, at, at + p.numel()), p.shape());
      at += p.numel();
    }
  }
  return total;
}

#else  // a build without NCCL: the MPI host path

std::string nccl_status(bool on_cuda, DType) {
  return on_cuda ? "host copies over MPI (this build has no NCCL)" : "host (a CPU run)";
}
std::shared_ptr<NcclChain> make_nccl_chain(bool, DType, int) { return nullptr; }
std::unique_ptr<GradientBuckets> nccl_bucketed_sum(NcclChain&, const std::vector<Tensor>&,
                                                   const std::vector<std::vector<size_t>>&, StepPart&, int64_t) {
  throw std::logic_error("nccl_bucketed_sum in a build without NCCL");
}

#endif

}  // namespace mtalab::dist
