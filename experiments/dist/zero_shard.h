// ZeRO-1 (--train.zero 1): the optimizer state sharded across the ranks on parameter
// boundaries. The buckets do not straddle owners, and the ordered chain's last rank sends each
// bucket's total to its owner only (a reduce-scatter in the one-process order,
// dist/bucketed_sum.h); the gradient norm is the owners' per-parameter sums of squares,
// gathered and added in parameter order as clip_grad_norm adds them; each rank clips and
// steps only the parameters it owns, keeping only their moments, and the updated parameters
// are gathered from their owners. The gathered values are copies, so the parameters are
// bitwise those of the unsharded step. Checkpoints hold the
// whole state (gathered to every rank, rank 0 writes it), so they do not depend on the world
// size; on resume each rank loads the whole state and then drops what it does not own.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace mtalab::dist {

// The rank owning each parameter: contiguous runs of about numel/N elements each.
std::vector<int> shard_owners(const std::vector<Tensor>& params, int ranks);

// clip_grad_norm (experiments/train/optimizer.h) over the shards: each owner's float64 sum of
// squares per parameter (the same kernels), gathered, added in parameter order; the owned
// gradients scaled. Returns the norm before clipping, the same on every rank.
double clip_grad_norm_sharded(const std::vector<Tensor>& params, const std::vector<int>& owner, double max_norm,
                              int64_t step);

// After the step: each parameter's values from its owner, copied in place on every rank.
void gather_parameters(const std::vector<Tensor>& params, const std::vector<int>& owner, int64_t step);

// The whole optimizer state from every rank's shard, in rank order (each rank's in parameter
// order); `param_of` gives a state tensor's shape, dtype and device by its name.
std::vector<std::pair<std::string, Tensor>> gather_state(
    const std::vector<std::pair<std::string, Tensor>>& mine,
    const std::vector<std::pair<std::string, Tensor>>& params);

}  // namespace mtalab::dist
