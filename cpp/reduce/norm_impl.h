// Norm chunk kernels over V/VD. Every path walks 16 elements per step into 16 double lanes so
// the rounding sequence is the same on every ISA (squares of floats are exact in double).
#pragma once
#include <cmath>
#include <cstdint>

#include "reduce/norm.h"
#include "reduce/sq_lanes_impl.h"

namespace sg {
namespace {

void sumsq_lanes(const float* x, int64_t n, double* lanes) {
  add_squares_to_lanes(
      n, lanes, [x](int64_t i) { return V::load(x + i); }, [x](int64_t i) { return x[i]; });
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
