// Incremental decoding: what each attention layer keeps between tokens, and the row forms
// of MTA's map ops that a new token needs.
//
// A new token at position t costs one query row against the cached keys: O(t) per head and
// layer instead of the O(t²) of recomputing every score. For MTA the convolutions read the
// score rows of the c_q − 1 previous queries (kq-conv before softmax, eq. 4) and the
// probability rows of the c_q,post − 1 previous queries (after softmax, eq. 5), so those rows
// are cached too — O(t·c_q) per head and layer.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "autograd/ops.h"

namespace mtalab {

// One layer's cache: named tensors (k, v, and whatever the variant keeps), and how many
// tokens it already holds.
struct LayerCache {
  int64_t pos = 0;
  std::map<std::string, Tensor> t;
  Tensor& operator[](const std::string& name) { return t[name]; }
  int64_t bytes() const;
};

// The whole model's cache. `pos` is the number of tokens decoded so far.
struct DecodeCache {
  int64_t pos = 0;
  std::vector<LayerCache> layers;
  int64_t bytes() const;
};

// `cached` with `x` appended along `dim` (x itself when nothing is cached yet).
Tensor append_rows(const Tensor& cached, const Tensor& x, int64_t dim);

// The last n rows (dim -2) of `maps` [B, H, T, L], with zero rows in front when T < n, so a
// query before position 0 reads zeros — what kq_conv's x~ reads outside the map. n >= 0.
Tensor last_rows(const Tensor& maps, int64_t n);

// rows [B, H, R, L] with one zero column appended: the cached rows of earlier queries are 0
// at a new key (Mask_0), which is what the next row's convolution must read there.
Tensor widen_rows(const Tensor& rows);

// Mask_0 on the last rows of a causal map: for a [B, H, T, T] map, its rows T−n .. T−1 with
// entries j > i zeroed, as last_rows would return them.
Tensor last_rows_masked(const Tensor& maps, int64_t n);

// kq_conv's newest output row: rows [B, H, c_q, L] are the c_q newest input rows (oldest
// first; the last is the new query at position L − 1, all of whose keys are visible),
// kernel [H, c_q, c_k] → [B, H, 1, L], equal to row L − 1 of kq_conv over the whole map.
Tensor kq_conv_last_row(const Tensor& rows, const Tensor& kernel, KqPad pad);

// head_mix on rows [B, H, R, L] whose entries are all visible (no causal mask).
Tensor head_mix_rows(const Tensor& x, const Tensor& mix);

}  // namespace mtalab
