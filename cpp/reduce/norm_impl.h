// Norm chunk kernels over V/VD. Every path walks 16 elements per step into 16 double lanes so
// the rounding sequence is the same on every ISA (squares of floats are exact in double).
#pragma once
#include <cmath>
#include <cstdint>

#include "reduce/norm.h"

namespace sg {
namespace {

void sumsq_lanes(const float* x, int64_t n, double* lanes) {
  constexpr int NV = kNormLanes / VD::W;  // double vectors per 16 lanes
  typename VD::R acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = VD::zero();
  int64_t i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes) {
    for (int f = 0; f < kNormLanes / V::W; ++f) {
      V::R xv = V::load(x + i + f * V::W);
      typename VD::R lo = VD::cvt_lo(xv), hi = VD::cvt_hi(xv);
      acc[2 * f] = VD::fma(lo, lo, acc[2 * f]);
      acc[2 * f + 1] = VD::fma(hi, hi, acc[2 * f + 1]);
    }
  }
  double tmp[kNormLanes];
  for (int v = 0; v < NV; ++v) VD::store(tmp + v * VD::W, acc[v]);
  for (int l = 0; l < kNormLanes; ++l) lanes[l] += tmp[l];
  for (int l = 0; i < n; ++i, ++l) {
    const double d = x[i];
    lanes[l] += d * d;
  }
}

float absmax(const float* x, int64_t n, bool* has_nan) {
  V::R m = V::zero();
  typename V::M nan = V::unord(V::zero(), V::zero());
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    V::R v = V::load(x + i);
    nan = V::mask_or(nan, V::unord(v, v));
    m = V::max(V::abs(v), m);  // a NaN lane keeps m: max returns the second operand
  }
  float best = V::reduce_max(m);
  bool h = V::any(nan);
  for (; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a != a) h = true;
    else if (a > best) best = a;
  }
  *has_nan = h;
  return best;
}

}  // namespace
}  // namespace sg
