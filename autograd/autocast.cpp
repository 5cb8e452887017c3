#include "autograd/autocast.h"

#include "autograd/errors.h"

namespace mtalab {

namespace {
thread_local DType g_autocast = DType::f32;
}

DType autocast_dtype() { return g_autocast; }

AutocastGuard::AutocastGuard(DType t) : prev_(g_autocast) {
  if (t != DType::f32 && t != DType::bf16)
    throw std::invalid_argument(std::string("autocast: expected float32 or bfloat16, got ") + dtype_name(t));
  g_autocast = t;
}
AutocastGuard::~AutocastGuard() { g_autocast = prev_; }

DType parse_precision(const std::string& s) {
  if (s == "fp32") return DType::f32;
  if (s == "bf16") return DType::bf16;
  throw InputError("unknown precision '" + s + "' (expected fp32 or bf16)");
}
const char* precision_name(DType t) { return t == DType::bf16 ? "bf16" : "fp32"; }

}  // namespace mtalab
