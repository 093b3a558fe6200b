// Column reductions over a (rows, cols) row-major block, vectorised across columns. Included by
// the linear and batchnorm *_impl.h files (anonymous namespace, once per ISA TU).
// Each column is summed in row order in float within blocks of kRowBlock rows, and the block
// sums are added in double: the sequence of roundings per column is the same on every ISA path
// and for any thread count (threads split column tiles, never rows).
#pragma once
#include <omp.h>

#include "common/parallel.h"

#include <algorithm>
#include <cstdint>

namespace sg {
namespace {

// Columns per tile: a thread walks its column range in tiles of this width, down every row of
// the tile; a full tile keeps its partial sums in registers (8 AVX2 vectors per sum).
// (Wider tiles with the partial sums in an L1 array measured slower: 512x4096 BatchNorm
// forward 3.6 vs 3.2 ms, one run each.)
constexpr int64_t kColTile = 64;
constexpr int64_t kRowBlock = 128;  // rows summed in float before the double combine

inline V::R load_cnt(const float* p, int64_t cnt) {
  return cnt == V::W ? V::load(p) : V::load_n(p, cnt);
}
inline void store_cnt(float* p, V::R x, int64_t cnt) {
  if (cnt == V::W) V::store(p, x);
  else V::store_n(p, x, cnt);
}

// Calls body(off, cnt) for each vector of columns [off, off + cnt) of [j0, j0 + w): the full
// vectors with cnt == V::W known at compile time, then the tail (cnt < V::W), if any.
template <class Body>
inline void tile_vectors(int64_t j0, int64_t w, Body body) {
  const int64_t full = w / V::W;
  for (int64_t v = 0; v < full; ++v) body(j0 + v * V::W, int64_t{V::W});
  if (w % V::W) body(j0 + full * V::W, w % V::W);
}

// out_q[j] = sum_i f_q(i, j0 + j) for j in [0, w), w <= kColTile, for each of the NF
// functions in one pass over the rows. `f(i, off, cnt)` returns the V vector of values for
// row i, columns [off, off + cnt) (cnt < V::W only on the tail vector).
template <class... F>
inline void tile_reduce_n(double* const (&out)[sizeof...(F)], int64_t rows, int64_t j0,
                          int64_t w, F... f) {
  constexpr int NF = static_cast<int>(sizeof...(F));
  alignas(64) float acc[NF][kColTile];
  for (int q = 0; q < NF; ++q)
    for (int64_t j = 0; j < w; ++j) out[q][j] = 0.0;
  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    const int64_t r1 = std::min(rows, r0 + kRowBlock);
    if (w == kColTile) {  // a full tile: every accumulator in a register
      constexpr int NV = static_cast<int>(kColTile / V::W);
      V::R reg[NF][NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        for (int q = 0; q < NF; ++q) reg[q][v] = V::zero();
      }
      for (int64_t i = r0; i < r1; ++i) {
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) {
          int q = 0;
          ((reg[q][v] = V::add(reg[q][v], f(i, j0 + v * V::W, int64_t{V::W})), ++q), ...);
        }
      }
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        for (int q = 0; q < NF; ++q) V::store(acc[q] + v * V::W, reg[q][v]);
      }
    } else {
      for (int q = 0; q < NF; ++q)
        for (int64_t j = 0; j < kColTile; j += V::W) V::store(acc[q] + j, V::zero());
      for (int64_t i = r0; i < r1; ++i) {
        tile_vectors(j0, w, [&](int64_t off, int64_t cnt) {
          int q = 0;
          ((V::store(acc[q] + (off - j0), V::add(V::load(acc[q] + (off - j0)), f(i, off, cnt))),
            ++q), ...);
        });
      }
    }
    for (int q = 0; q < NF; ++q)
      for (int64_t j = 0; j < w; ++j) out[q][j] += static_cast<double>(acc[q][j]);
  }
}

// One sum: out[j] = sum_i f(i, j0 + j). Each column is summed in row order in float within
// blocks of kRowBlock rows, the block sums added in double, whatever the tiling.
template <class F>
inline void tile_reduce(double* out, int64_t rows, int64_t j0, int64_t w, F f) {
  double* const outs[1] = {out};
  tile_reduce_n(outs, rows, j0, w, f);
}

// Runs body(j0, w) over column tiles: each thread of the team takes one contiguous range of
// whole vectors and walks it in tiles of at most kColTile. OpenMP when there is enough work.
template <class Body>
inline void for_col_tiles(int64_t rows, int64_t cols, Body body) {
  const bool par = cols > V::W && rows * cols >= (int64_t{1} << 17);
#pragma omp parallel if (par) num_threads(num_threads())
  {
    const int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t nvec = (cols + V::W - 1) / V::W;
    const int64_t c0 = std::min(cols, nvec * tid / nth * V::W);
    const int64_t c1 = std::min(cols, nvec * (tid + 1) / nth * V::W);
    for (int64_t j0 = c0; j0 < c1; j0 += kColTile) body(j0, std::min(kColTile, c1 - j0));
  }
}

}  // namespace
}  // namespace sg
