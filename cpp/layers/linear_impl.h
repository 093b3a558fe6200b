// Linear-layer kernels over V: the bias-gradient column sum. Included once per ISA TU.
#pragma once
#include <cstdint>

#include "layers/colreduce_impl.h"
#include "layers/linear.h"

namespace sg {
namespace {

void linear_colsum(float* db, const float* dy, int64_t batch, int64_t out, float beta) {
  if (out <= 0) return;
  for_col_tiles(batch, out, [&](int64_t j0, int64_t w) {
    double s[kColTile];
    tile_reduce(s, batch, j0, w,
                [&](int64_t i, int64_t off, int64_t cnt) { return load_cnt(dy + i * out + off, cnt); });
    for (int64_t j = 0; j < w; ++j) {
      const float v = static_cast<float>(s[j]);
      db[j0 + j] = beta != 0.0f ? db[j0 + j] + v : v;
    }
  });
}

}  // namespace
}  // namespace sg
