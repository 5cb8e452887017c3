#include "experiments/dist/bucketed_sum.h"

#include <string>

namespace mtalab::dist {

namespace {
// Tags of bucket b: the prefix along the chain, and the total from the last rank.
int prefix_tag(size_t b) { return 100 + 2 * (int)b; }
int total_tag(size_t b) { return 101 + 2 * (int)b; }
size_t grad_bytes(const Tensor& p) { return (size_t)p.numel() * (p.dtype() == DType::f64 ? 8 : 4); }
}  // namespace

std::vector<std::vector<size_t>> make_buckets(const std::vector<Tensor>& params, double bytes,
                                              const std::vector<int>& owner) {
  std::vector<std::vector<size_t>> out;
  double filled = 0;
  for (size_t k = params.size(); k-- > 0;) {
    const bool new_owner = !owner.empty() && !out.empty() && owner[out.back().back()] != owner[k];
    if (out.empty() || filled >= bytes || new_owner) {
      out.emplace_back();
      filled = 0;
    }
    out.back().push_back(k);
    filled += (double)grad_bytes(params[k]);
  }
  return out;
}

GradientBuckets::GradientBuckets(const std::vector<Tensor>& params, const std::vector<std::vector<size_t>>& buckets,
                                 StepPart& part, int64_t step, const std::vector<int>& owner)
    : params_(params), part_(part), what_("the gradient sum of step " + std::to_string(step)),
      last_(params.size()), taken_(params.size(), false), bucket_of_(params.size()) {
  if (rank() == 0) part_.fold.resize(params.size());
  buckets_.resize(buckets.size());
  for (size_t b = 0; b < buckets.size(); ++b) {
    Bucket& k = buckets_[b];
    k.members = buckets[b];
    for (size_t i : k.members) {
      k.params.push_back(params[i]);
      bucket_of_[i] = b;
    }
    k.waiting = k.members.size();
    if (!owner.empty()) k.owner = owner[k.members[0]];
  }
}

void GradientBuckets::ready(size_t i) {
  if (taken_[i]) return;
  taken_[i] = true;
  last_[i] = params_[i].grad();
  const size_t b = bucket_of_[i];
  if (--buckets_[b].waiting == 0) complete(b);
  progress();
}

std::vector<Tensor> GradientBuckets::finish() {
  for (size_t i = 0; i < params_.size(); ++i) ready(i);
  return totals();
}

std::vector<Tensor> GradientBuckets::rank0_fold(size_t b) {
  std::vector<Tensor> acc;
  for (size_t i : buckets_[b].members) {
    fold_one(part_.fold[i], last_[i]);
    acc.push_back(part_.fold[i]);
  }
  return acc;
}

std::vector<Tensor> GradientBuckets::contributions(size_t b, size_t m) const {
  const size_t i = buckets_[b].members[m];
  std::vector<Tensor> out;
  for (const auto& g : part_.stash) out.push_back(g[i]);
  out.push_back(last_[i]);
  return out;
}

BucketedSum::BucketedSum(const std::vector<Tensor>& params, const std::vector<std::vector<size_t>>& buckets,
                         StepPart& part, int64_t step, const std::vector<int>& owner)
    : GradientBuckets(params, buckets, part, step, owner), wire_(buckets.size()) {
  const int r = rank(), n = size();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Wire& w = wire_[b];
    const size_t cap = packed_capacity(buckets_[b].params);
    if (r > 0) {
      w.prefix.resize(cap);
      w.prefix_req = irecv(w.prefix.data(), cap, r - 1, prefix_tag(b), what_.c_str());
    }
    const int to = buckets_[b].owner;
    if (r < n - 1 && (to < 0 || to == r)) {
      w.total.resize(cap);
      w.total_req = irecv(w.total.data(), cap, n - 1, total_tag(b), what_.c_str());
    }
  }
}

// This rank's running sum of bucket b (rank 0's fold; on ranks > 0 the received prefix plus
// each of its micro-batches in order), sent on along the chain.
void BucketedSum::forward(size_t b) {
  const int r = rank(), n = size();
  Wire& w = wire_[b];
  if (r == 0) {
    w.sum = rank0_fold(b);
  } else {
    size_t at = 0;
    w.sum = unpack_grads(w.prefix.data(), w.prefix.size(), at, buckets_[b].params, what_.c_str());
    for (size_t m = 0; m < w.sum.size(); ++m)
      for (const Tensor& g : contributions(b, m)) fold_one(w.sum[m], g);
  }
  pack_grads(w.out, w.sum);
  if (r < n - 1) {
    w.send_reqs.push_back(isend(w.out.data(), w.out.size(), r + 1, prefix_tag(b), what_.c_str()));
  } else {
    for (int q = 0; q < n - 1; ++q)
      if (buckets_[b].owner < 0 || buckets_[b].owner == q)
        w.send_reqs.push_back(isend(w.out.data(), w.out.size(), q, total_tag(b), what_.c_str()));
  }
  w.sent = true;
}

// Sends every bucket that can go; never waits.
void BucketedSum::progress() {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Wire& w = wire_[b];
    if (w.sent || buckets_[b].waiting > 0) continue;
    if (rank() > 0 && !test(w.prefix_req, what_.c_str())) continue;
    forward(b);
  }
  for (Wire& w : wire_)
    for (Request& q : w.send_reqs) test(q, what_.c_str());
}

std::vector<Tensor> BucketedSum::totals() {
  const int r = rank(), n = size();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    if (wire_[b].sent) continue;
    wait_for(wire_[b].prefix_req, r - 1, what_.c_str());
    forward(b);
  }
  std::vector<Tensor> total(params_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Wire& w = wire_[b];
    for (Request& q : w.send_reqs) wait_for(q, r < n - 1 ? r + 1 : 0, what_.c_str());
    const int to = buckets_[b].owner;
    if (to >= 0 && to != r) continue;  // ZeRO-1: another rank's shard
    if (r < n - 1) {
      wait_for(w.total_req, n - 1, what_.c_str());
      size_t at = 0;
      w.sum = unpack_grads(w.total.data(), w.total.size(), at, buckets_[b].params, what_.c_str());
    }
    for (size_t m = 0; m < buckets_[b].members.size(); ++m) total[buckets_[b].members[m]] = w.sum[m];
  }
  return total;
}

}  // namespace mtalab::dist
