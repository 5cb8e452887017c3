// Row-level CPU kernels of Multi-Token Attention's map ops, shared by the whole-map
// kernels (kq_conv.cpp, head_mix.cpp) and the fused attention (attention.cpp), which
// runs them on blocks of rows it recomputes instead of on stored [T, T] maps.
//
// A "map" here is n x n with row stride n, addressed by absolute row index: row r starts
// at map + r * n. The fused attention passes maps of which only a band of rows exists in
// memory (the pointer is offset so that the stored rows have their absolute indices);
// the functions read and write only rows their formulas need, which the caller stores.
// Only causal entries (column <= row) are read; outputs above the diagonal are written 0.
#pragma once
#include <cstdint>

namespace mtalab::cpu {

// Key-query convolution geometry: n = map size, cq x ck taps, key offset p (tap c of
// output column j reads column j - p + c; tap a of output row i reads row i - (cq-1) + a).
struct KqGeom {
  int64_t n, cq, ck, p;
};

// Output rows [i0, i1) of kq_conv (reads input rows i0-(cq-1) .. i1-1).
void kq_conv_rows(const float* x, const float* K, float* out, const KqGeom& g, int64_t i0, int64_t i1);
void kq_conv_rows(const double* x, const double* K, double* out, const KqGeom& g, int64_t i0, int64_t i1);
// For input rows [r0, r1): gx rows (if gx) and the kernel gradient summed over those input
// rows into acc[cq*ck] (if acc); reads gout rows r0 .. r1-1+(cq-1) (those below n do not exist).
void kq_conv_bwd_rows(const float* go, const float* x, const float* K, float* gx, double* acc, const KqGeom& g,
                      int64_t r0, int64_t r1);
void kq_conv_bwd_rows(const double* go, const double* x, const double* K, double* gx, double* acc, const KqGeom& g,
                      int64_t r0, int64_t r1);

// Head mixing of one group of ch maps `hs` elements apart (map m of the group at x + m*hs),
// rows [q0, q1): out_j = sum_i M[i, j] x_i.
void head_mix_rows(const float* x, const float* M, float* out, int64_t n, int64_t hs, int64_t ch, int64_t q0,
                   int64_t q1);
void head_mix_rows(const double* x, const double* M, double* out, int64_t n, int64_t hs, int64_t ch, int64_t q0,
                   int64_t q1);
// Rows [q0, q1) of gx_i = sum_j M[i, j] gout_j (if gx), and gM[i, j] += <x_i, gout_j> over
// those rows into acc[ch*ch] (if acc).
void head_mix_bwd_rows(const float* x, const float* M, const float* go, float* gx, double* acc, int64_t n, int64_t hs,
                       int64_t ch, int64_t q0, int64_t q1);
void head_mix_bwd_rows(const double* x, const double* M, const double* go, double* gx, double* acc, int64_t n,
                       int64_t hs, int64_t ch, int64_t q0, int64_t q1);

}  // namespace mtalab::cpu
