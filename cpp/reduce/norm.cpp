// Portable norm drivers: each chunk through the ISA table, chunking and combine order from
// chunked_reduce.h, so results do not depend on the thread count or the ISA (see norm.h).
#include "reduce/norm.h"

#include <cmath>
#include <limits>

#include "reduce/chunked_reduce.h"

namespace sg {

double sumsq_chunk(const float* x, int64_t n) {
  double lanes[kReduceLanes] = {0};
  norm_kernels().sumsq_lanes(x, n, lanes);
  return sum_lanes(lanes);
}

double absmax_chunk(const float* x, int64_t n) {
  bool nan = false;
  const float m = norm_kernels().absmax(x, n, &nan);
  return nan ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(m);
}

void max_or_nan(double* acc, double p) {
  if (std::isnan(p)) *acc = p;
  else if (p > *acc) *acc = p;  // false once *acc is NaN: NaN stays
}

double sumsq_f32(const float* x, int64_t n) {
  return chunked_sum(n, [x](int64_t b, int64_t len) { return sumsq_chunk(x + b, len); });
}

float absmax_f32(const float* x, int64_t n) {
  double m = 0.0;
  chunked_reduce(
      1, [n](int64_t) { return n; }, 0,
      [x](int64_t, int64_t b, int64_t len) { return absmax_chunk(x + b, len); },
      [&m](int64_t, double p) { max_or_nan(&m, p); });
  return std::isnan(m) ? NAN : static_cast<float>(m);
}

}  // namespace sg
