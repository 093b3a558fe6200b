// The tile transpose over an ISA's 8x8 block (transpose8x8, defined by the including file
// before this header). Included once per ISA TU.
#pragma once
#include <cstdint>

#include "layout/layout.h"

namespace sg {
namespace {

void layout_transpose_tile(float* dst, const float* src, int64_t rows, int64_t cols, int64_t ldd,
                           int64_t lds) {
  const int64_t r8 = rows - rows % 8, c8 = cols - cols % 8;
  for (int64_t i = 0; i < r8; i += 8) {
    for (int64_t j = 0; j < c8; j += 8) transpose8x8(dst + j * ldd + i, src + i * lds + j, ldd, lds);
    for (int64_t j = c8; j < cols; ++j) {
      for (int64_t ii = i; ii < i + 8; ++ii) dst[j * ldd + ii] = src[ii * lds + j];
    }
  }
  for (int64_t i = r8; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
  }
}

}  // namespace
}  // namespace sg
