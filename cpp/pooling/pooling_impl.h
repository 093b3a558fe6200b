// Pooling kernel bodies, written once over the vector type V: include after simd/vec_<isa>.h
// in pooling__<isa>.cpp. Vectorised over channels (a channels-last pixel's c floats), with a
// masked tail. See pooling.h for the contracts.
#pragma once
#include <cstdint>
#include <limits>
#include <type_traits>

#include "pooling/pooling.h"

namespace sg {
namespace {

using R = V::R;

template <bool kTail>
inline R pool_load(const float* p, int64_t n) {
  if constexpr (kTail) return V::load_n(p, n); else return V::load(p);
}
// Tail stores go through a stack buffer: a masked store (vmaskmovps) is microcoded and slow
// on AMD's cores, and with c < W (c = 3, 6: the first layers) every store is a tail.
// store(q) writes all W lanes at q; kTail keeps the first n of them for p.
template <bool kTail, class T, class Store>
inline void store_lanes(T* p, int64_t n, Store&& store) {
  if constexpr (kTail) {
    alignas(64) T t[V::W];
    store(t);
    for (int64_t i = 0; i < n; ++i) p[i] = t[i];
  } else {
    store(p);
  }
}
template <bool kTail>
inline void pool_store(float* p, R x, int64_t n) {
  store_lanes<kTail>(p, n, [&](float* q) { V::store(q, x); });
}
template <bool kTail>
inline R pool_load_i32(const int32_t* p, int64_t n) {
  if constexpr (kTail) return V::load_i32_n(p, n); else return V::load_i32(p);
}
template <bool kTail>
inline void pool_store_i32(int32_t* p, R x, int64_t n) {
  store_lanes<kTail>(p, n, [&](int32_t* q) { V::store_i32(q, x); });
}

// Calls body(tail, c0, lanes) over the channel blocks of c; tail is std::true_type for the
// last, partial block (lanes < W), so the body's loads and stores are chosen at compile time.
template <class Body>
inline void over_channels(int64_t c, Body&& body) {
  int64_t c0 = 0;
  for (; c0 + V::W <= c; c0 += V::W) body(std::false_type{}, c0, int64_t{V::W});
  if (c0 < c) body(std::true_type{}, c0, c - c0);
}

// The divisor of output (o_r, o_c) applied to v, as pooling.h's avg_forward says.
inline R pool_divide(R v, float dr, float dc, bool divide_twice) {
  if (divide_twice) return V::div(V::div(v, V::set1(dr)), V::set1(dc));
  return V::div(v, V::set1(dr * dc));
}

void pool_max_forward(float* y, int32_t* argmax, const float* x, int64_t h, int64_t w,
                      int64_t c, const PoolAxis& rows, const PoolAxis& cols, int64_t kw,
                      int64_t r0, int64_t r1) {
  const int64_t oh = rows.out, ow = cols.out;
  const R ninf = V::set1(-std::numeric_limits<float>::infinity());
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / oh, o_r = r % oh;
    const float* xi = x + img * h * w * c;
    const int64_t klo_r = rows.klo[o_r], khi_r = rows.khi[o_r], pr = rows.start[o_r];
    for (int64_t o_c = 0; o_c < ow; ++o_c) {
      const int64_t klo_c = cols.klo[o_c], khi_c = cols.khi[o_c], pc = cols.start[o_c];
      const int64_t off = (r * ow + o_c) * c;
      // torch's start: value -inf, index the first element inside the input
      const bool empty = klo_r >= khi_r || klo_c >= khi_c;
      const R first = V::set1(empty ? -1.0f : static_cast<float>(klo_r * kw + klo_c));
      over_channels(c, [&](auto tail, int64_t c0, int64_t lanes) {
        constexpr bool kTail = decltype(tail)::value;
        R best = ninf, idx = first;
        for (int64_t ki = klo_r; ki < khi_r; ++ki) {
          const float* xrow = xi + (pr + ki * rows.step) * w * c + c0;
          for (int64_t kj = klo_c; kj < khi_c; ++kj) {
            const R v = pool_load<kTail>(xrow + (pc + kj * cols.step) * c, lanes);
            // a larger value, or a NaN (which then stays: nothing compares greater)
            const auto m = V::mask_or(V::gt(v, best), V::unord(v, v));
            best = V::select(m, v, best);
            idx = V::select(m, V::set1(static_cast<float>(ki * kw + kj)), idx);
          }
        }
        pool_store<kTail>(y + off + c0, best, lanes);
        pool_store_i32<kTail>(argmax + off + c0, idx, lanes);
      });
    }
  }
}

void pool_max_backward(float* dx, const float* dy, const int32_t* argmax, int64_t h, int64_t w,
                       int64_t c, const PoolAxis& rows, const PoolAxis& cols, int64_t kw,
                       int64_t r0, int64_t r1) {
  const int64_t oh = rows.out, ow = cols.out;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / h, i_r = r % h;
    const int64_t out0 = img * oh * ow * c;
    const int64_t jr0 = rows.cover_off[i_r], jr1 = rows.cover_off[i_r + 1];
    for (int64_t i_c = 0; i_c < w; ++i_c) {
      const int64_t jc0 = cols.cover_off[i_c], jc1 = cols.cover_off[i_c + 1];
      float* dxp = dx + (r * w + i_c) * c;
      over_channels(c, [&](auto tail, int64_t c0, int64_t lanes) {
        constexpr bool kTail = decltype(tail)::value;
        R acc = V::zero();
        for (int64_t jr = jr0; jr < jr1; ++jr) {
          const int64_t orow = out0 + rows.cover_o[jr] * ow * c + c0, ki = rows.cover_k[jr];
          for (int64_t jc = jc0; jc < jc1; ++jc) {
            const int64_t o = orow + cols.cover_o[jc] * c;
            const R k = V::set1(static_cast<float>(ki * kw + cols.cover_k[jc]));
            const auto m = V::eq(pool_load_i32<kTail>(argmax + o, lanes), k);
            acc = V::add(acc, V::and_mask(m, pool_load<kTail>(dy + o, lanes)));
          }
        }
        pool_store<kTail>(dxp + c0, acc, lanes);
      });
    }
  }
}

void pool_avg_forward(float* y, const float* x, int64_t h, int64_t w, int64_t c,
                      const PoolAxis& rows, const PoolAxis& cols, bool divide_twice,
                      int64_t r0, int64_t r1) {
  const int64_t oh = rows.out, ow = cols.out;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / oh, o_r = r % oh;
    const float* xi = x + img * h * w * c;
    const int64_t klo_r = rows.klo[o_r], khi_r = rows.khi[o_r], pr = rows.start[o_r];
    const float dr = rows.div[o_r];
    for (int64_t o_c = 0; o_c < ow; ++o_c) {
      const int64_t klo_c = cols.klo[o_c], khi_c = cols.khi[o_c], pc = cols.start[o_c];
      const float dc = cols.div[o_c];
      const bool empty = klo_r >= khi_r || klo_c >= khi_c;
      float* yp = y + (r * ow + o_c) * c;
      over_channels(c, [&](auto tail, int64_t c0, int64_t lanes) {
        constexpr bool kTail = decltype(tail)::value;
        R sum = V::zero();
        for (int64_t ki = klo_r; ki < khi_r; ++ki) {
          const float* xrow = xi + (pr + ki * rows.step) * w * c + c0;
          for (int64_t kj = klo_c; kj < khi_c; ++kj) {
            sum = V::add(sum, pool_load<kTail>(xrow + (pc + kj * cols.step) * c, lanes));
          }
        }
        pool_store<kTail>(yp + c0, empty ? V::zero() : pool_divide(sum, dr, dc, divide_twice),
                          lanes);
      });
    }
  }
}

void pool_avg_backward(float* dx, const float* dy, int64_t h, int64_t w, int64_t c,
                       const PoolAxis& rows, const PoolAxis& cols, bool divide_twice,
                       int64_t r0, int64_t r1) {
  const int64_t oh = rows.out, ow = cols.out;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / h, i_r = r % h;
    const int64_t out0 = img * oh * ow * c;
    const int64_t jr0 = rows.cover_off[i_r], jr1 = rows.cover_off[i_r + 1];
    for (int64_t i_c = 0; i_c < w; ++i_c) {
      const int64_t jc0 = cols.cover_off[i_c], jc1 = cols.cover_off[i_c + 1];
      float* dxp = dx + (r * w + i_c) * c;
      over_channels(c, [&](auto tail, int64_t c0, int64_t lanes) {
        constexpr bool kTail = decltype(tail)::value;
        R acc = V::zero();
        for (int64_t jr = jr0; jr < jr1; ++jr) {
          const int64_t o_r = rows.cover_o[jr];
          const int64_t orow = out0 + o_r * ow * c + c0;
          const float dr = rows.div[o_r];
          for (int64_t jc = jc0; jc < jc1; ++jc) {
            const int64_t o_c = cols.cover_o[jc];
            const R g = pool_load<kTail>(dy + orow + o_c * c, lanes);
            acc = V::add(acc, pool_divide(g, dr, cols.div[o_c], divide_twice));
          }
        }
        pool_store<kTail>(dxp + c0, acc, lanes);
      });
    }
  }
}

}  // namespace
}  // namespace sg
