// Driver of the layout conversion: a fixed grid of (image, row tile, column tile) cache tiles,
// shared out by a static OpenMP schedule. Each output element is written once, by a copy, so
// the result never depends on the thread count.
#include "layout/layout.h"

#include "common/parallel.h"

namespace sg {

void batched_transpose_f32(float* dst, const float* src, int64_t n, int64_t rows, int64_t cols) {
  if (n <= 0 || rows <= 0 || cols <= 0) return;
  const LayoutKernels& k = layout_kernels();
  const int64_t tr = (rows + kLayoutTile - 1) / kLayoutTile;
  const int64_t tc = (cols + kLayoutTile - 1) / kLayoutTile;
  const int64_t ntiles = n * tr * tc;
  const int64_t plane = rows * cols;
  auto tile = [&](int64_t t) {
    const int64_t img = t / (tr * tc);
    const int64_t r0 = (t / tc) % tr * kLayoutTile;
    const int64_t c0 = t % tc * kLayoutTile;
    const int64_t nr = rows - r0 < kLayoutTile ? rows - r0 : kLayoutTile;
    const int64_t nc = cols - c0 < kLayoutTile ? cols - c0 : kLayoutTile;
    k.transpose_tile(dst + img * plane + c0 * rows + r0, src + img * plane + r0 * cols + c0, nr,
                     nc, rows, cols);
  };
  if (n * plane < kElementwiseParallelMin || ntiles < 2 || num_threads() < 2) {
    for (int64_t t = 0; t < ntiles; ++t) tile(t);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t t = 0; t < ntiles; ++t) tile(t);
}

}  // namespace sg
