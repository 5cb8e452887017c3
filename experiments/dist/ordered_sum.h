// The sum of one optimizer step's gradients over every rank, in the order one process
// would add them: bitwise independent of how the global batch was split among ranks.
//
// One process with grad_accum G computes, per parameter, ((g_0 + g_1) + g_2) + ... + g_{G-1}
// (g_m: the gradient of global micro-batch m, itself computed from zero). With N ranks, rank
// r owns micro-batches r*A .. r*A+A-1 (A = grad_accum per rank, G = N*A). Floating-point
// addition is not associative, so the ranks cannot each sum their own part and add the N
// parts: that would be (g_0+g_1) + (g_2+g_3), not ((g_0+g_1)+g_2)+g_3. Instead the partial
// sum travels along the ranks in order (a chain): rank 0 sends its fold, rank r adds its own
// micro-batch gradients one by one to what it received and passes it on, and the last rank
// sends the total to every rank. MPI_Allreduce could not promise this order: its algorithm
// (and with it the order of the additions) is chosen by message size, rank count and
// topology, and differs between MPI libraries and versions.
//
// The cost, stated in the README: the chain is N-1 sequential hops plus a broadcast, instead
// of an allreduce's ~2 transfers of the gradient per rank in a ring; and a rank other than
// 0 keeps each of its A micro-batch gradients until the prefix arrives (A copies of the
// gradients in memory; none extra when A = 1).
#pragma once
#include <vector>

#include "autograd/tensor.h"

namespace mtalab::dist {

// acc <- acc + g per parameter, treating an undefined gradient as "no contribution": an
// undefined acc takes g, an undefined g leaves acc (the autograd engine's own rule).
void fold_into(std::vector<Tensor>& acc, const std::vector<Tensor>& g);
void fold_one(Tensor& acc, const Tensor& g);

// Gradients on the wire: [uint8 per tensor: defined][the defined ones' values: float64
// parameters as double, every other dtype as float (exact for bf16)]. `params` gives each
// one's shape, dtype and device; packed_capacity is the largest such message.
void pack_grads(std::vector<char>& out, const std::vector<Tensor>& grads);
std::vector<Tensor> unpack_grads(const char* in, size_t size, size_t& at, const std::vector<Tensor>& params,
                                 const char* what);
size_t packed_capacity(const std::vector<Tensor>& params);

struct StepPart {
  std::vector<Tensor> fold;                // rank 0: the fold of its micro-batch gradients
  std::vector<std::vector<Tensor>> stash;  // other ranks: each micro-batch's gradients, in order
  std::vector<double> losses;              // this rank's micro-batch losses, in order
  int stop = 0;                            // a stop signal this rank received (0: none)
};

struct StepTotal {
  std::vector<Tensor> grads;   // per parameter (undefined: no micro-batch reached it)
  std::vector<double> losses;  // every micro-batch's loss, in global order
  int stop = 0;                // the largest stop signal any rank received
};

// Runs the chain; `params` gives each gradient's shape, dtype and device. `step` names the
// exchange in a timeout's message. In a world of one, returns the fold as it is.
StepTotal ordered_sum(StepPart part, const std::vector<Tensor>& params, int64_t step);

}  // namespace mtalab::dist
