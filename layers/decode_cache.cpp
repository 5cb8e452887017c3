#include "layers/decode_cache.h"

#include <stdexcept>

namespace mtalab {

int64_t LayerCache::bytes() const {
  int64_t n = 0;
  for (const auto& [name, x] : t)
    if (x.defined()) n += x.numel() * (int64_t)dtype_size(x.dtype());
  return n;
}

int64_t DecodeCache::bytes() const {
  int64_t n = 0;
  for (const auto& l : layers) n += l.bytes();
  return n;
}

Tensor append_rows(const Tensor& cached, const Tensor& x, int64_t dim) {
  return cached.defined() ? concat({cached, x}, dim) : contiguous(x);
}

Tensor last_rows(const Tensor& maps, int64_t n) {
  const int64_t B = maps.size(0), H = maps.size(1), T = maps.size(2), L = maps.size(3);
  if (n < 0) throw std::invalid_argument("last_rows: n = " + std::to_string(n) + " < 0");
  Tensor kept = contiguous(slice(maps, 2, std::max<int64_t>(0, T - n), T));
  if (T >= n) return kept;
  return concat({zeros({B, H, n - T, L}, maps.options()), kept}, 2);
}

Tensor widen_rows(const Tensor& rows) {
  const int64_t B = rows.size(0), H = rows.size(1), R = rows.size(2);
  return concat({rows, zeros({B, H, R, 1}, rows.options())}, 3);
}

Tensor last_rows_masked(const Tensor& maps, int64_t n) {
  const int64_t T = maps.size(2), L = maps.size(3);
  Tensor rows = last_rows(maps, n);  // row r is query T − n + r
  std::vector<double> keep((size_t)(n * L), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j <= T - n + r && j < L; ++j) keep[(size_t)(r * L + j)] = 1.0;
  return mul(rows, to_dtype(from_vector(keep, {n, L}), maps.dtype()).to(maps.device()));
}

Tensor kq_conv_last_row(const Tensor& rows, const Tensor& kernel, KqPad pad) {
  const int64_t B = rows.size(0), H = rows.size(1), cq = rows.size(2), L = rows.size(3);
  const int64_t ck = kernel.size(2), p = kq_pad_offset(pad, ck);
  if (kernel.size(0) != H || kernel.size(1) != cq)
    throw std::invalid_argument("kq_conv_last_row: rows " + shape_str(rows.shape()) + " do not match kernel " +
                                shape_str(kernel.shape()) + " (expected [B, H, c_q, L] for a kernel [H, c_q, c_k])");
  // out[j] = sum_{a, c} kernel[a, c] * x~[a, j − p + c]: pad the keys with zeros (x~ reads 0
  // outside the map), then add up the c_k shifted copies weighted by their kernel column.
  TensorList parts;
  if (p > 0) parts.push_back(zeros({B, H, cq, p}, rows.options()));
  parts.push_back(rows);
  if (ck - 1 - p > 0) parts.push_back(zeros({B, H, cq, ck - 1 - p}, rows.options()));
  Tensor padded = parts.size() == 1 ? rows : concat(parts, 3);
  // One key shift at a time keeps each product [B, H, c_q, L] small (a stack of all c_k
  // shifts would be c_k times that and fall out of cache at long contexts).
  Tensor acc;
  for (int64_t c = 0; c < ck; ++c) {
    Tensor term = mul(slice(padded, 3, c, c + L), reshape(contiguous(slice(kernel, 2, c, c + 1)), {H, cq, 1}));
    acc = acc.defined() ? add(acc, term) : term;
  }
  return reshape(sum(acc, {2}), {B, H, 1, L});
}

Tensor head_mix_rows(const Tensor& x, const Tensor& mix) {
  const int64_t B = x.size(0), H = x.size(1), R = x.size(2), L = x.size(3);
  const int64_t G = mix.size(0), ch = mix.size(1);
  if (G * ch != H || mix.size(2) != ch)
    throw std::invalid_argument("head_mix_rows: mix " + shape_str(mix.shape()) + " does not match rows " +
                                shape_str(x.shape()) + " (expected [H/c_h, c_h, c_h])");
  // out[g·c_h + j] = sum_i mix[g, i, j] · x[g·c_h + i]: mixᵀ per group times the group's rows.
  Tensor grouped = reshape(contiguous(x), {B, G, ch, R * L});
  return reshape(matmul(transpose(mix, 1, 2), grouped), {B, H, R, L});
}

}  // namespace mtalab
