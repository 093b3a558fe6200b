// Softmax / log-softmax over V (softmax.h). Included once per ISA translation unit after
// vec_*.h. Every exp sees x - max(x) <= 0; the row's sums run in a fixed order (V::W lane sums,
// then the lanes, then the scalar tail), and each row is one thread's, so the results do not
// depend on the thread count.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/parallel.h"
#include "layers/softmax.h"
#include "simd/vmath.h"

namespace sg {
namespace {

constexpr float kSmInf = std::numeric_limits<float>::infinity();

// The row maximum as the exps use it: a row whose maximum is -inf (all -inf: 0/0) gives NaN.
inline float sm_row_max(float mx) {
  return mx == -kSmInf ? std::numeric_limits<float>::quiet_NaN() : mx;
}
inline V::R sm_lane_max(V::R mx) {
  return V::select(V::eq(mx, V::set1(-kSmInf)), V::set1(std::numeric_limits<float>::quiet_NaN()),
                   mx);
}

// x - m, and 0 where x == m: an entry equal to a +inf maximum gets e^0 = 1 (the +inf entries
// share the mass, the limit) instead of inf - inf = NaN; finite rows are unchanged.
inline V::R sm_shift(V::R x, V::R m) { return V::select(V::eq(x, m), V::zero(), V::sub(x, m)); }
inline float sm_shift(float x, float m) { return x == m ? 0.f : x - m; }

// One contiguous row of D (inner == 1).
void softmax_row(float* y, const float* x, int64_t D, bool log) {
  const int W = V::W;
  int64_t j = 0;
  V::R vmax = V::set1(-kSmInf);
  for (; j + W <= D; j += W) vmax = V::max(vmax, V::load(x + j));
  float mx = j > 0 ? V::reduce_max(vmax) : -kSmInf;
  for (; j < D; ++j) mx = x[j] > mx ? x[j] : mx;
  mx = sm_row_max(mx);
  const V::R vm = V::set1(mx);
  V::R vsum = V::zero();
  j = 0;
  for (; j + W <= D; j += W) {
    V::R e = vexp(sm_shift(V::load(x + j), vm));
    if (!log) V::store(y + j, e);
    vsum = V::add(vsum, e);
  }
  float sum = j > 0 ? V::reduce_add(vsum) : 0.f;
  for (int64_t t = j; t < D; ++t) {  // the tail one by one: its masked lanes would add e^-m
    float tmp[V::W];
    V::store(tmp, vexp(V::set1(sm_shift(x[t], mx))));
    if (!log) y[t] = tmp[0];
    sum += tmp[0];
  }
  if (log) {
    const V::R vls = V::set1(static_cast<float>(std::log(static_cast<double>(sum))));
    j = 0;
    for (; j + W <= D; j += W) V::store(y + j, V::sub(sm_shift(V::load(x + j), vm), vls));
    if (j < D) V::store_n(y + j, V::sub(sm_shift(V::load_n(x + j, D - j), vm), vls), D - j);
  } else {
    const V::R inv = V::set1(1.0f / sum);
    j = 0;
    for (; j + W <= D; j += W) V::store(y + j, V::mul(V::load(y + j), inv));
    if (j < D) V::store_n(y + j, V::mul(V::load_n(y + j, D - j), inv), D - j);
  }
}

// One block of w <= W lanes over the strided dimension (inner > 1): lane l is the row at
// inner offset l; rows are D apart by `inner`. Lanes past w compute on zeros, never stored.
void softmax_cols(float* y, const float* x, int64_t D, int64_t inner, int64_t w, bool log) {
  const bool full = w == V::W;
  auto ld = [&](const float* p) { return full ? V::load(p) : V::load_n(p, w); };
  auto st = [&](float* p, V::R v) { full ? V::store(p, v) : V::store_n(p, v, w); };
  V::R vmax = V::set1(-kSmInf);
  for (int64_t d = 0; d < D; ++d) vmax = V::max(vmax, ld(x + d * inner));
  const V::R vm = sm_lane_max(vmax);
  V::R vsum = V::zero();
  for (int64_t d = 0; d < D; ++d) {
    V::R e = vexp(sm_shift(ld(x + d * inner), vm));
    if (!log) st(y + d * inner, e);
    vsum = V::add(vsum, e);
  }
  if (log) {
    float lanes[V::W];
    V::store(lanes, vsum);
    for (int l = 0; l < V::W; ++l) lanes[l] = static_cast<float>(std::log(static_cast<double>(lanes[l])));
    const V::R vls = V::load(lanes);
    for (int64_t d = 0; d < D; ++d) st(y + d * inner, V::sub(sm_shift(ld(x + d * inner), vm), vls));
  } else {
    const V::R inv = V::div(V::set1(1.0f), vsum);
    for (int64_t d = 0; d < D; ++d) st(y + d * inner, V::mul(ld(y + d * inner), inv));
  }
}

// Backward of one contiguous row. The masked tail lanes load zeros: they add 0 to the sums.
void softmax_row_backward(float* dx, const float* dy, const float* y, int64_t D, bool log) {
  const int W = V::W;
  V::R vs = V::zero();
  int64_t j = 0;
  for (; j + W <= D; j += W) {
    V::R g = V::load(dy + j);
    vs = log ? V::add(vs, g) : V::fma(g, V::load(y + j), vs);
  }
  if (j < D) {
    V::R g = V::load_n(dy + j, D - j);
    vs = log ? V::add(vs, g) : V::fma(g, V::load_n(y + j, D - j), vs);
  }
  const V::R s = V::set1(V::reduce_add(vs));
  auto one = [&](V::R g, V::R yv) {
    return log ? V::fnma(vexp(yv), s, g) : V::mul(yv, V::sub(g, s));
  };
  j = 0;
  for (; j + W <= D; j += W) V::store(dx + j, one(V::load(dy + j), V::load(y + j)));
  if (j < D) V::store_n(dx + j, one(V::load_n(dy + j, D - j), V::load_n(y + j, D - j)), D - j);
}

void softmax_cols_backward(float* dx, const float* dy, const float* y, int64_t D, int64_t inner,
                           int64_t w, bool log) {
  const bool full = w == V::W;
  auto ld = [&](const float* p) { return full ? V::load(p) : V::load_n(p, w); };
  V::R s = V::zero();
  for (int64_t d = 0; d < D; ++d) {
    V::R g = ld(dy + d * inner);
    s = log ? V::add(s, g) : V::fma(g, ld(y + d * inner), s);
  }
  for (int64_t d = 0; d < D; ++d) {
    V::R g = ld(dy + d * inner), yv = ld(y + d * inner);
    V::R r = log ? V::fnma(vexp(yv), s, g) : V::mul(yv, V::sub(g, s));
    full ? V::store(dx + d * inner, r) : V::store_n(dx + d * inner, r, w);
  }
}

// body(u) for every unit u in [0, units), in parallel when the whole call has enough elements;
// a unit is one row (or block of rows), always computed by one thread in one order.
template <class Body>
void softmax_units(int64_t units, int64_t elements, Body body) {
  const bool par = elements >= kElementwiseParallelMin && units > 1 && num_threads() > 1;
#pragma omp parallel for schedule(static) if (par) num_threads(num_threads())
  for (int64_t u = 0; u < units; ++u) body(u);
}

// The units of one call over (outer, D, inner): with inner == 1, row(off) for each row of D
// (off = o * D); else cols(off, w) for each block of w <= W adjacent inner columns, D strided
// by inner (off = o * D * inner + i0).
template <class Row, class Cols>
void softmax_walk(int64_t outer, int64_t D, int64_t inner, Row row, Cols cols) {
  if (outer == 0 || D == 0 || inner == 0) return;
  if (inner == 1) {
    softmax_units(outer, outer * D, [&](int64_t o) { row(o * D); });
    return;
  }
  const int64_t blocks = (inner + V::W - 1) / V::W;
  softmax_units(outer * blocks, outer * D * inner, [&](int64_t u) {
    const int64_t o = u / blocks, i0 = (u % blocks) * V::W;
    const int64_t w = inner - i0 < V::W ? inner - i0 : V::W;
    cols(o * D * inner + i0, w);
  });
}

void softmax_forward(float* y, const float* x, int64_t outer, int64_t D, int64_t inner,
                     bool log) {
  softmax_walk(
      outer, D, inner, [=](int64_t off) { softmax_row(y + off, x + off, D, log); },
      [=](int64_t off, int64_t w) { softmax_cols(y + off, x + off, D, inner, w, log); });
}

void softmax_backward(float* dx, const float* dy, const float* y, int64_t outer, int64_t D,
                      int64_t inner, bool log) {
  softmax_walk(
      outer, D, inner,
      [=](int64_t off) { softmax_row_backward(dx + off, dy + off, y + off, D, log); },
      [=](int64_t off, int64_t w) {
        softmax_cols_backward(dx + off, dy + off, y + off, D, inner, w, log);
      });
}

}  // namespace
}  // namespace sg
