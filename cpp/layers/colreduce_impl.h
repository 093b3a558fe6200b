// Column reductions over a (rows, cols) row-major block, vectorised across columns. Included by
// the linear and batchnorm *_impl.h files (anonymous namespace, once per ISA TU).
// Each column is summed in row order in float within blocks of kRowBlock rows, and the block
// sums are added in double: the sequence of roundings per column is the same on every ISA path
// and for any thread count (threads split column tiles, never rows).
#pragma once
#include <algorithm>
#include <cstdint>

namespace sg {
namespace {

constexpr int64_t kColTile = 64;    // columns per tile (one thread's unit of work)
constexpr int64_t kRowBlock = 128;  // rows summed in float before the double combine

// out[j] = sum_i f(i, j0 + j) for j in [0, w), w <= kColTile. `f(i, off, cnt)` returns the V
// vector of values for row i, columns [off, off + cnt) (cnt < V::W only on the last vector).
template <class F>
inline void tile_reduce(double* out, int64_t rows, int64_t j0, int64_t w, F f) {
  constexpr int NV = static_cast<int>(kColTile / V::W);
  const int nv = static_cast<int>((w + V::W - 1) / V::W);
  for (int64_t j = 0; j < w; ++j) out[j] = 0.0;
  alignas(64) float tmp[kColTile];
  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    const int64_t r1 = std::min(rows, r0 + kRowBlock);
    V::R acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = V::zero();
    for (int64_t i = r0; i < r1; ++i) {
      for (int v = 0; v < nv; ++v) {
        const int64_t off = j0 + v * V::W;
        const int64_t cnt = std::min<int64_t>(V::W, j0 + w - off);
        acc[v] = V::add(acc[v], f(i, off, cnt));
      }
    }
    for (int v = 0; v < nv; ++v) V::store(tmp + v * V::W, acc[v]);
    for (int64_t j = 0; j < w; ++j) out[j] += static_cast<double>(tmp[j]);
  }
}

inline V::R load_cnt(const float* p, int64_t cnt) {
  return cnt == V::W ? V::load(p) : V::load_n(p, cnt);
}
inline void store_cnt(float* p, V::R x, int64_t cnt) {
  if (cnt == V::W) V::store(p, x);
  else V::store_n(p, x, cnt);
}

// Runs body(j0, w) over column tiles; OpenMP over tiles when there is enough work.
template <class Body>
inline void for_col_tiles(int64_t rows, int64_t cols, Body body) {
  const int64_t ntiles = (cols + kColTile - 1) / kColTile;
  // A tile of 128 x 64 floats takes a few microseconds: only fork for big enough inputs.
  const bool par = ntiles > 1 && rows * cols >= (int64_t{1} << 17);
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < ntiles; ++t) {
    const int64_t j0 = t * kColTile;
    body(j0, std::min(kColTile, cols - j0));
  }
}

}  // namespace
}  // namespace sg
