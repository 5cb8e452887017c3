// Element types and devices: the two facts every tensor carries besides its shape.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "autograd/bfloat16.h"

namespace mtalab {

// bf16 is a storage type: kernels compute on it in float32 (autograd/bfloat16.h).
enum class DType : uint8_t { f32, f64, i32, i64, bf16 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType parse_dtype(const std::string& s);  // "float32"/"f32", "float64"/"f64", "bfloat16"/"bf16", "int32", "int64"
inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }
// The dtype kernels compute and keep statistics in: float32 for bfloat16, else t itself.
inline DType acc_dtype(DType t) { return t == DType::bf16 ? DType::f32 : t; }

enum class DeviceKind : uint8_t { cpu = 0, cuda = 1 };
constexpr int kNumDeviceKinds = 2;

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;
  Device() = default;
  Device(DeviceKind k, int i = 0) : kind(k), index(i) {}
  static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:1"
  std::string str() const;
  bool is_cpu() const { return kind == DeviceKind::cpu; }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

inline const Device kCPU{};

}  // namespace mtalab

// Runs BODY with `scalar_t` bound to float or double, by dtype; throws for other dtypes
// (bfloat16 included: a kernel that takes it dispatches with MTALAB_DISPATCH_FLOATING).
#define MTALAB_DISPATCH_FLOAT(DTYPE, OPNAME, ...)                                   \
  [&] {                                                                             \
    switch (DTYPE) {                                                                \
      case ::mtalab::DType::f32: { using scalar_t = float; return __VA_ARGS__(); }  \
      case ::mtalab::DType::f64: { using scalar_t = double; return __VA_ARGS__(); } \
      default:                                                                      \
        throw std::invalid_argument(std::string(OPNAME) + ": expected a float32 or " \
                                    "float64 tensor, got " +                        \
                                    ::mtalab::dtype_name(DTYPE));                   \
    }                                                                               \
  }()

// Runs BODY with `index_t` bound to int32_t or int64_t.
#define MTALAB_DISPATCH_INDEX(DTYPE, OPNAME, ...)                                    \
  [&] {                                                                              \
    switch (DTYPE) {                                                                 \
      case ::mtalab::DType::i32: { using index_t = int32_t; return __VA_ARGS__(); }  \
      case ::mtalab::DType::i64: { using index_t = int64_t; return __VA_ARGS__(); }  \
      default:                                                                       \
        throw std::invalid_argument(std::string(OPNAME) + ": expected an int32 or "  \
                                    "int64 index tensor, got " +                     \
                                    ::mtalab::dtype_name(DTYPE));                    \
    }                                                                                \
  }()

// Runs BODY with `scalar_t` bound to float, double or bfloat16 (compute in acc_t<scalar_t>).
#define MTALAB_DISPATCH_FLOATING(DTYPE, OPNAME, ...)                                     \
  [&] {                                                                                  \
    switch (DTYPE) {                                                                     \
      case ::mtalab::DType::f32: { using scalar_t = float; return __VA_ARGS__(); }       \
      case ::mtalab::DType::f64: { using scalar_t = double; return __VA_ARGS__(); }      \
      case ::mtalab::DType::bf16: { using scalar_t = ::mtalab::bfloat16; return __VA_ARGS__(); } \
      default:                                                                           \
        throw std::invalid_argument(std::string(OPNAME) + ": expected a float32, float64 " \
                                    "or bfloat16 tensor, got " +                         \
                                    ::mtalab::dtype_name(DTYPE));                        \
    }                                                                                    \
  }()

// Runs BODY with `type_t` bound to the element type of any dtype (copies and fills).
#define MTALAB_DISPATCH_ALL(DTYPE, ...)                                                 \
  [&] {                                                                                 \
    switch (DTYPE) {                                                                    \
      case ::mtalab::DType::f32: { using type_t = float; return __VA_ARGS__(); }        \
      case ::mtalab::DType::f64: { using type_t = double; return __VA_ARGS__(); }       \
      case ::mtalab::DType::i32: { using type_t = int32_t; return __VA_ARGS__(); }      \
      case ::mtalab::DType::i64: { using type_t = int64_t; return __VA_ARGS__(); }      \
      case ::mtalab::DType::bf16: { using type_t = ::mtalab::bfloat16; return __VA_ARGS__(); } \
    }                                                                                   \
    throw std::logic_error("unknown dtype");                                            \
  }()
