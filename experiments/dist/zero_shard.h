// ZeRO-1 (--train.zero 1): the optimizer state sharded across the ranks on parameter
// boundaries. Every rank still receives every summed gradient (the ordered chain's total,
// dist/bucketed_sum.h), so the gradient norm and its clipping are computed exactly as
// without sharding; each rank then steps only the parameters it owns, keeping only their
// moments, and the updated parameters are gathered from their owners. The gathered values
// are copies, so the parameters are bitwise those of the unsharded step. Checkpoints hold the
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

// After the step: each parameter's values from its owner, copied in place on every rank.
void gather_parameters(const std::vector<Tensor>& params, const std::vector<int>& owner, int64_t step);

// The whole optimizer state from every rank's shard, in rank order (each rank's in parameter
// order); `param_of` gives a state tensor's shape, dtype and device by its name.
std::vector<std::pair<std::string, Tensor>> gather_state(
    const std::vector<std::pair<std::string, Tensor>>& mine,
    const std::vector<std::pair<std::string, Tensor>>& params);

}  // namespace mtalab::dist
