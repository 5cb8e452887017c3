// Shared helpers for writing ops (not part of the public API).
#pragma once
#include <string>

#include "autograd/kernels.h"
#include "autograd/ops.h"

namespace mtalab::detail {

// Throws naming the op and both shapes when dtypes or devices differ.
void check_compatible(const char* op, const Tensor& a, const Tensor& b);
void check_float(const char* op, const Tensor& a);
// Throws naming the op and both devices when a and b live on different devices.
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
// A non-differentiable view onto x's storage.
Tensor make_view(const Tensor& x, const Shape& shape, const Shape& strides, int64_t offset);
// Contiguous, undifferentiated copy (or x itself when already contiguous).
Tensor materialize(const Tensor& x);
Tensor run_unary(UnaryKind k, const Tensor& x, double alpha = 0);
Tensor run_binary(BinaryKind k, const Tensor& a, const Tensor& b, const char* op);
// Shape with the listed (sorted, unique, wrapped) dims set to 1.
std::vector<int64_t> normalize_dims(std::vector<int64_t> dims, int64_t ndim, const char* op);

}  // namespace mtalab::detail
