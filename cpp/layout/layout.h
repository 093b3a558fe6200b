// Layout conversion of the convolution family: channels-first (n, c, s) <-> channels-last
// (n, s, c) float32 arrays (s = L or H*W), i.e. one matrix transpose per image. A pure copy:
// every path and thread count gives the same bits. Shape legend: src is (n, rows, cols) and
// dst is (n, cols, rows), both C-contiguous.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

struct LayoutKernels {
  // dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: one cache tile (the driver
  // keeps rows, cols <= kLayoutTile). Full 8x8 blocks go through registers, edges are scalar.
  void (*transpose_tile)(float* dst, const float* src, int64_t rows, int64_t cols, int64_t ldd,
                         int64_t lds);
};

SG_DECLARE_DISPATCH(LayoutKernels, layout_kernels, layout_kernels);

// Tile edge of the driver's cache blocking: a 64x64 tile is 16 KiB read + 16 KiB written.
constexpr int64_t kLayoutTile = 64;

// dst (n, cols, rows) = each image of src (n, rows, cols) transposed. OpenMP over the fixed
// (image, tile) grid; dst and src must not overlap.
void batched_transpose_f32(float* dst, const float* src, int64_t n, int64_t rows, int64_t cols);

}  // namespace sg
