// Mixed precision: which ops compute in bfloat16, in one list (as PyTorch's autocast op
// lists do). Inside an AutocastGuard(DType::bf16) — the trainer's --train.precision bf16
// wraps every forward pass in one — these ops take float32 operands, round bfloat16
// copies of them (the copies are what the op saves for its backward: half the memory),
// multiply on the tensor cores with float32 accumulation, and return float32 straight
// from the accumulators; their backward passes do the same with the float32 gradient:
//
//   bfloat16 operands, float32 results:  matmul (and so linear, the attention scores and
//                                        the probabilities x values of the map path),
//                                        fused_attention (q, k, v; the MTA kernels, o, the
//                                        row log-sum-exp and the kernels' gradients are
//                                        float32)
//
// Every other op runs in float32 as written, because it either reduces (RMSNorm/LayerNorm
// statistics, softmax and log-sum-exp, the cross-entropy loss, sums, gradient norms and
// clipping: bfloat16's 8 significant bits would lose small terms of a sum), is
// elementwise on values the residual stream accumulates in (float32 keeps the update
// from rounding away), or is a parameter update (AdamW on float32 master weights and
// state). Outside a guard, or with DType::f32, every op runs in its inputs' dtype.
#pragma once
#include "autograd/dtype.h"

namespace mtalab {

// The dtype the listed ops' operands are rounded to: bf16 inside AutocastGuard(bf16),
// else f32 (no rounding). Per thread.
DType autocast_dtype();
inline bool autocast_bf16() { return autocast_dtype() == DType::bf16; }

class AutocastGuard {
 public:
  explicit AutocastGuard(DType t);  // f32 or bf16
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType prev_;
};

// --train.precision's values: "fp32" or "bf16" (throws InputError naming the choices).
DType parse_precision(const std::string& s);
const char* precision_name(DType t);  // "fp32" / "bf16"

}  // namespace mtalab
