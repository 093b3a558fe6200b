// The 16-double-lane sum of squares over V/VD of the norm kernels: the square of
// element i goes to lane i % 16 in index order, so the rounding is the same on every ISA.
#pragma once
#include <cstdint>

#include "reduce/chunked_reduce.h"

namespace sg {
namespace {

// lanes[l] += d(i)^2 in double for i in [0, n), i % kReduceLanes == l. vec_at(i) returns the
// V::W floats d(i..i+V::W) and scalar_at(i) the float d(i) (either may also write, e.g. a
// gradient); each index is visited exactly once.
template <class VecAt, class ScalarAt>
inline void add_squares_to_lanes(int64_t n, double* lanes, VecAt vec_at, ScalarAt scalar_at) {
  constexpr int NV = kReduceLanes / VD::W;  // double vectors per 16 lanes
  typename VD::R acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = VD::zero();
  int64_t i = 0;
  for (; i + kReduceLanes <= n; i += kReduceLanes) {
    for (int f = 0; f < kReduceLanes / V::W; ++f) {
      const V::R d = vec_at(i + f * V::W);
      typename VD::R lo = VD::cvt_lo(d), hi = VD::cvt_hi(d);
      // V::W / VD::W == 2: lanes f*V::W .. map to double vectors 2f and 2f+1.
      acc[2 * f] = VD::fma(lo, lo, acc[2 * f]);
      acc[2 * f + 1] = VD::fma(hi, hi, acc[2 * f + 1]);
    }
  }
  double tmp[kReduceLanes];
  for (int v = 0; v < NV; ++v) VD::store(tmp + v * VD::W, acc[v]);
  for (int l = 0; l < kReduceLanes; ++l) lanes[l] += tmp[l];
  for (int l = 0; i < n; ++i, ++l) {
    const double d = scalar_at(i);
    lanes[l] += d * d;
  }
}

}  // namespace
}  // namespace sg
