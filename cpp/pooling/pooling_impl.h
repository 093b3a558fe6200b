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

// One output pixel's window (see PoolAxis): its rows ki in [klo_r, khi_r) at input row
// pr + ki * rows.step, its columns likewise; out: its offset in y (pixel * c).
struct PoolWindow {
  const float* xi;  // the image's first pixel
  int64_t o_r, o_c, out;
  int64_t klo_r, khi_r, pr, klo_c, khi_c, pc;
  bool empty() const { return klo_r >= khi_r || klo_c >= khi_c; }
};

// body(win) for each output pixel of the flat output rows [r0, r1) of n * oh.
template <class Body>
inline void over_windows(const float* x, int64_t h, int64_t w, int64_t c, const PoolAxis& rows,
                         const PoolAxis& cols, int64_t r0, int64_t r1, Body&& body) {
  const int64_t oh = rows.out, ow = cols.out;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / oh, o_r = r % oh;
    const float* xi = x + img * h * w * c;
    for (int64_t o_c = 0; o_c < ow; ++o_c) {
      body(PoolWindow{xi, o_r, o_c, (r * ow + o_c) * c, rows.klo[o_r], rows.khi[o_r],
                      rows.start[o_r], cols.klo[o_c], cols.khi[o_c], cols.start[o_c]});
    }
  }
}

// f(ki, kj, p) over the window's elements inside the input in row-major order, p pointing
// at channel c0 of the element's pixel.
template <class F>
inline void over_window_elements(const PoolWindow& win, const PoolAxis& rows,
                                 const PoolAxis& cols, int64_t w, int64_t c, int64_t c0, F&& f) {
  for (int64_t ki = win.klo_r; ki < win.khi_r; ++ki) {
    const float* xrow = win.xi + (win.pr + ki * rows.step) * w * c + c0;
    for (int64_t kj = win.klo_c; kj < win.khi_c; ++kj) f(ki, kj, xrow + (win.pc + kj * cols.step) * c);
  }
}

// body(dxp, f) for each input pixel of the flat input rows [r0, r1) of n * h, dxp its first
// channel in dx; f(g) calls g(o, o_r, o_c, ki, kj) for the outputs whose windows hold it (in
// output row-major order), o the output pixel's offset in dy (pixel * c), ki/kj its window
// element.
template <class Body>
inline void over_covers(float* dx, int64_t h, int64_t w, int64_t c, const PoolAxis& rows,
                        const PoolAxis& cols, int64_t r0, int64_t r1, Body&& body) {
  const int64_t oh = rows.out, ow = cols.out;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / h, i_r = r % h;
    const int64_t out0 = img * oh * ow * c;
    const int64_t jr0 = rows.cover_off[i_r], jr1 = rows.cover_off[i_r + 1];
    for (int64_t i_c = 0; i_c < w; ++i_c) {
      const int64_t jc0 = cols.cover_off[i_c], jc1 = cols.cover_off[i_c + 1];
      body(dx + (r * w + i_c) * c, [&](auto&& g) {
        for (int64_t jr = jr0; jr < jr1; ++jr) {
          const int64_t o_r = rows.cover_o[jr], ki = rows.cover_k[jr];
          const int64_t orow = out0 + o_r * ow * c;
          for (int64_t jc = jc0; jc < jc1; ++jc) {
            const int64_t o_c = cols.cover_o[jc];
            g(orow + o_c * c, o_r, o_c, ki, cols.cover_k[jc]);
          }
        }
      });
    }
  }
}

void pool_max_forward(float* y, int32_t* argmax, const float* x, int64_t h, int64_t w,
                      int64_t c, const PoolAxis& rows, const PoolAxis& cols, int64_t kw,
                      int64_t r0, int64_t r1) {
  const R ninf = V::set1(-std::numeric_limits<float>::infinity());
  over_windows(x, h, w, c, rows, cols, r0, r1, [&](const PoolWindow& win) {
    // torch's start: value -inf, index the first element inside the input
    const R first =
        V::set1(win.empty() ? -1.0f : static_cast<float>(win.klo_r * kw + win.klo_c));
    over_channels(c, [&](auto tail, int64_t c0, int64_t lanes) {
      constexpr bool kTail = decltype(tail)::value;
      R best = ninf, idx = first;
      over_window_elements(win, rows, cols, w, c, c0, [&](int64_t ki, int64_t kj, const float* p) {
        const R v = pool_load<kTail>(p, lanes);
        // a larger value, or a NaN (which then stays: nothing compares greater)
        const auto m = V::mask_or(V::gt(v, best), V::unord(v, v));
        best = V::select(m, v, best);
        idx = V::select(m, V::set1(static_cast<float>(ki * kw + kj)), idx);
      });
      pool_store<kTail>(y + win.out + c0, best, lanes);
      pool_store_i32<kTail>(argmax + win.out + c0, idx, lanes);
    });
  });
}

void pool_max_backward(float* dx, const float* dy, const int32_t* argmax, int64_t h, int64_t w,
                       int64_t c, const PoolAxis& rows, const PoolAxis& cols, int64_t kw,
                       int64_t r0, int64_t r1) {
  over_covers(dx, h, w, c, rows, cols, r0, r1, [&](float* dxp, auto&& covers) {
    over_channels(c, [&](auto tail, int64_t c0, int64_t lanes) {
      constexpr bool kTail = decltype(tail)::value;
      R acc = V::zero();
      covers([&](int64_t o, int64_t, int64_t, int64_t ki, int64_t kj) {
        const R k = V::set1(static_cast<float>(ki * kw + kj));
        const auto m = V::eq(pool_load_i32<kTail>(argmax + o + c0, lanes), k);
        acc = V::add(acc, V::and_mask(m, pool_load<kTail>(dy + o + c0, lanes)));
      });
      pool_store<kTail>(dxp + c0, acc, lanes);
    });
  });
}

void pool_avg_forward(float* y, const float* x, int64_t h, int64_t w, int64_t c,
                      const PoolAxis& rows, const PoolAxis& cols, bool divide_twice,
                      int64_t r0, int64_t r1) {
  over_windows(x, h, w, c, rows, cols, r0, r1, [&](const PoolWindow& win) {
    const float dr = rows.div[win.o_r], dc = cols.div[win.o_c];
    over_channels(c, [&](auto tail, int64_t c0, int64_t lanes) {
      constexpr bool kTail = decltype(tail)::value;
      R sum = V::zero();
      over_window_elements(win, rows, cols, w, c, c0, [&](int64_t, int64_t, const float* p) {
        sum = V::add(sum, pool_load<kTail>(p, lanes));
      });
      pool_store<kTail>(y + win.out + c0,
                        win.empty() ? V::zero() : pool_divide(sum, dr, dc, divide_twice), lanes);
    });
  });
}

void pool_avg_backward(float* dx, const float* dy, int64_t h, int64_t w, int64_t c,
                       const PoolAxis& rows, const PoolAxis& cols, bool divide_twice,
                       int64_t r0, int64_t r1) {
  over_covers(dx, h, w, c, rows, cols, r0, r1, [&](float* dxp, auto&& covers) {
    over_channels(c, [&](auto tail, int64_t c0, int64_t lanes) {
      constexpr bool kTail = decltype(tail)::value;
      R acc = V::zero();
      covers([&](int64_t o, int64_t o_r, int64_t o_c, int64_t, int64_t) {
        const R g = pool_load<kTail>(dy + o + c0, lanes);
        acc = V::add(acc, pool_divide(g, rows.div[o_r], cols.div[o_c], divide_twice));
      });
      pool_store<kTail>(dxp + c0, acc, lanes);
    });
  });
}

}  // namespace
}  // namespace sg
