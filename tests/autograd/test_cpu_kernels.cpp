// CPU kernel checks: strided copies (contiguous() of permuted and sliced views, copy_ into
// a transposed destination), element by element against the views' own strides.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "autograd/ops.h"

using namespace mtalab;

namespace {

// The flat offsets of v's elements in row-major order, from its shape and strides.
std::vector<int64_t> offsets(const Tensor& v) {
  const Shape& sh = v.shape();
  const Shape& st = v.strides();
  std::vector<int64_t> out, idx(sh.size(), 0);
  out.reserve(v.numel());
  for (int64_t f = 0; f < v.numel(); ++f) {
    int64_t off = 0;
    for (size_t k = 0; k < sh.size(); ++k) off += idx[k] * st[k];
    out.push_back(off);
    for (int64_t k = (int64_t)sh.size() - 1; k >= 0 && ++idx[k] == sh[k]; --k) idx[k] = 0;
  }
  return out;
}

// contiguous(v) holds v's elements in row-major order, read index by index.
template <typename T>
void check_contiguous(const Tensor& v) {
  INFO("shape ", shape_str(v.shape()), " strides ", shape_str(v.strides()));
  const Tensor c = contiguous(v);
  REQUIRE(c.is_contiguous());
  REQUIRE(c.shape() == v.shape());
  REQUIRE(c.dtype() == v.dtype());
  const T* src = v.data<T>();
  const T* out = c.data<T>();
  const std::vector<int64_t> off = offsets(v);
  int64_t bad = 0, first = -1;
  for (int64_t f = 0; f < (int64_t)off.size(); ++f)
    if (out[f] != src[off[f]] && bad++ == 0) first = f;
  INFO("first wrong element at flat index ", first);
  CHECK(bad == 0);
}

// x = arange(prod(shape)) in dtype T, so every element is distinct.
Tensor ramp(const Shape& s, DType t) { return arange(shape_numel(s), t).reshape(s); }

template <typename T>
void check_all_layouts(DType t) {
  // 2-D transposes, odd sizes; the larger ones span many tiles and both threads.
  for (const Shape& s : std::vector<Shape>{{37, 53}, {53, 37}, {1, 7}, {5, 1}, {3, 2}, {259, 131}, {64, 64}, {17, 1000}})
    check_contiguous<T>(ramp(s, t).transpose(0, 1));
  // 3-D permutes.
  const Tensor x3 = ramp({7, 11, 13}, t);
  for (const auto& p : std::vector<std::vector<int64_t>>{{0, 2, 1}, {2, 1, 0}, {1, 2, 0}, {2, 0, 1}, {1, 0, 2}})
    check_contiguous<T>(x3.permute(p));
  // 4-D permutes, including attention-like ones ([B,T,H,D] -> [B,H,T,D] and -> [B,H,D,T]).
  for (const Shape& s : std::vector<Shape>{{3, 5, 7, 9}, {2, 37, 3, 17}}) {
    const Tensor x4 = ramp(s, t);
    for (const auto& p : std::vector<std::vector<int64_t>>{
             {0, 2, 3, 1}, {3, 2, 1, 0}, {0, 2, 1, 3}, {0, 3, 1, 2}, {0, 1, 3, 2}, {1, 3, 0, 2}})
      check_contiguous<T>(x4.permute(p));
  }
  // Slices with steps: a size-1 slice of a middle dim leaves a stride of 2 or 3 behind.
  const Tensor y = ramp({41, 2, 29}, t).slice(1, 1, 2).squeeze(1);  // [41, 29], row stride 58
  check_contiguous<T>(y.transpose(0, 1));
  check_contiguous<T>(y.slice(0, 3, 38).slice(1, 2, 27).transpose(0, 1));
  const Tensor z = ramp({23, 31, 3}, t).slice(2, 2, 3).squeeze(2);  // [23, 31], column stride 3
  check_contiguous<T>(z);
  check_contiguous<T>(z.transpose(0, 1));
  check_contiguous<T>(ramp({9, 4, 10, 6}, t).slice(1, 1, 3).slice(3, 0, 5).permute({3, 2, 1, 0}));
  check_contiguous<T>(ramp({9, 4, 10, 6}, t).slice(1, 1, 3).slice(3, 0, 5).permute({0, 3, 1, 2}));
  // Broadcast (stride 0) sources.
  check_contiguous<T>(ramp({1, 19}, t).expand({13, 19}).transpose(0, 1));
  check_contiguous<T>(ramp({19, 1}, t).expand({19, 13}).transpose(0, 1));
}

}  // namespace

TEST_CASE("contiguous: permuted, transposed and sliced views, float32") { check_all_layouts<float>(DType::f32); }
TEST_CASE("contiguous: permuted, transposed and sliced views, float64") { check_all_layouts<double>(DType::f64); }
TEST_CASE("contiguous: permuted, transposed and sliced views, int32") { check_all_layouts<int32_t>(DType::i32); }

TEST_CASE("copy_: into a transposed destination, and with a dtype change") {
  for (const Shape& s : std::vector<Shape>{{37, 53}, {131, 259}}) {
    const Tensor src = ramp(s, DType::f32);
    Tensor buf = zeros({s[1], s[0]});
    Tensor dst = buf.transpose(0, 1);  // shape s, destination stride 1 along dim 0
    copy_(dst, src);
    const std::vector<float> b = buf.to_vector<float>(), x = src.to_vector<float>();
    int64_t bad = 0;
    for (int64_t i = 0; i < s[0]; ++i)
      for (int64_t j = 0; j < s[1]; ++j) bad += b[j * s[0] + i] != x[i * s[1] + j];
    CHECK(bad == 0);

    const Tensor t = src.transpose(0, 1);
    const Tensor d = to_dtype(t, DType::f64);
    const std::vector<double> dv = d.to_vector<double>();
    const float* tp = t.data<float>();
    const std::vector<int64_t> off = offsets(t);
    bad = 0;
    for (size_t f = 0; f < off.size(); ++f) bad += dv[f] != (double)tp[off[f]];
    CHECK(bad == 0);
  }
}
