// Depthwise row kernels over V (see depthwise.h). Included once per ISA TU. Every row is
// c_out channels wide and vectorised over channels: full vectors, then one masked tail vector
// (the same operations on fewer lanes, so a channel's bits do not depend on its lane).
// Each output element sums its taps in (r, s) order, after the bias; the dW/db row sums run
// over ox in four interleaved partial sums combined as (p0 + p1) + (p2 + p3): fixed orders
// that depend on the geometry only, never on the thread count or the vector width.
#pragma once
#include <algorithm>
#include <cstdint>

#include "depthwise/depthwise.h"
#include <type_traits>

namespace sg {
namespace {

template <bool Full>
inline V::R dw_load(const float* p, int64_t cnt) {
  if constexpr (Full) return V::load(p);
  else return V::load_n(p, cnt);
}
template <bool Full>
inline void dw_store(float* p, V::R x, int64_t cnt) {
  if constexpr (Full) V::store(p, x);
  else V::store_n(p, x, cnt);
}

using FullVec = std::true_type;
using TailVec = std::false_type;

// Calls body(kind, off, cnt) for each vector of the c channels: the full vectors
// (kind = FullVec{}, cnt == V::W), then the tail (TailVec{}, cnt < V::W), if any. The body
// reads kind's ::value as the Full argument of dw_load / dw_store.
template <class Body>
inline void dw_vectors(int64_t c, Body body) {
  const int64_t full = c / V::W * V::W;
  for (int64_t off = 0; off < full; off += V::W) body(FullVec{}, off, int64_t{V::W});
  if (full < c) body(TailVec{}, full, c - full);
}

// The output columns [lo, hi) of `out` whose whole window lies inside [0, in): every tap
// column ox * stride - pad0 + s * dil, s < k, is a real pixel. hi >= lo.
inline void dw_interior(int64_t out, int64_t in, int64_t k, int64_t stride, int64_t dil,
                        int64_t pad0, int64_t* lo, int64_t* hi) {
  const int64_t l = std::min(out, (pad0 + stride - 1) / stride);
  const int64_t span = in - 1 + pad0 - (k - 1) * dil;
  const int64_t h = span < 0 ? 0 : std::min(out, span / stride + 1);
  *lo = l;
  *hi = std::max(l, h);
}

// The taps [s0, s1) of a window starting at column i0 (= ox * stride - pad0) that fall inside
// [0, in). s1 may be <= s0 (no tap).
inline void dw_taps(int64_t i0, int64_t in, int64_t k, int64_t dil, int64_t* s0, int64_t* s1) {
  *s0 = i0 >= 0 ? 0 : (-i0 + dil - 1) / dil;
  const int64_t last = in - 1 - i0;  // the largest s * dil that stays inside
  *s1 = last < 0 ? 0 : std::min(k, last / dil + 1);
}

// ---- forward ------------------------------------------------------------------------------

// P consecutive output columns ox0 .. ox0 + P - 1 whose windows are all inside the row, one
// channel vector [off, off + cnt): P independent accumulators share each weight load.
template <int P, bool Full>
inline void dw_fwd_block(float* y, const float* const* xrows, const float* wk, const float* bias,
                         const ConvGeometry& g, bool relu, int64_t ox0, int64_t off,
                         int64_t cnt) {
  const int64_t co = g.c_out, step = g.sw * co;
  const V::R b = bias ? dw_load<Full>(bias + off, cnt) : V::zero();
  V::R acc[P];
  for (int p = 0; p < P; ++p) acc[p] = b;
  for (int64_t r = 0; r < g.kh; ++r) {
    const float* xr = xrows[r];
    if (!xr) continue;
    const float* wr = wk + r * g.kw * co + off;
    const float* xs = xr + (ox0 * g.sw - g.pw0) * co + off;
    for (int64_t s = 0; s < g.kw; ++s, xs += g.dw * co) {
      const V::R wv = dw_load<Full>(wr + s * co, cnt);
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[p] = V::fma(dw_load<Full>(xs + p * step, cnt), wv, acc[p]);
    }
  }
  for (int p = 0; p < P; ++p) {
    const V::R out = relu ? V::max(V::zero(), acc[p]) : acc[p];
    dw_store<Full>(y + (ox0 + p) * co + off, out, cnt);
  }
}

// One output column with only the taps [s0, s1) inside the row (a border column).
template <bool Full>
inline void dw_fwd_border(float* y, const float* const* xrows, const float* wk, const float* bias,
                          const ConvGeometry& g, bool relu, int64_t ox, int64_t s0, int64_t s1,
                          int64_t off, int64_t cnt) {
  const int64_t co = g.c_out, i0 = ox * g.sw - g.pw0;
  V::R acc = bias ? dw_load<Full>(bias + off, cnt) : V::zero();
  for (int64_t r = 0; r < g.kh; ++r) {
    const float* xr = xrows[r];
    if (!xr) continue;
    const float* wr = wk + r * g.kw * co + off;
    for (int64_t s = s0; s < s1; ++s) {
      acc = V::fma(dw_load<Full>(xr + (i0 + s * g.dw) * co + off, cnt),
                   dw_load<Full>(wr + s * co, cnt), acc);
    }
  }
  dw_store<Full>(y + ox * co + off, relu ? V::max(V::zero(), acc) : acc, cnt);
}

constexpr int kFwdBlock = 8;  // output columns per interior block (8 FMA chains)

void dw_forward_row(float* y, const float* const* xrows, const float* wk, const float* bias,
                    const ConvGeometry& g, bool relu) {
  int64_t lo, hi;
  dw_interior(g.ow, g.w, g.kw, g.sw, g.dw, g.pw0, &lo, &hi);
  auto border = [&](int64_t ox) {
    int64_t s0, s1;
    dw_taps(ox * g.sw - g.pw0, g.w, g.kw, g.dw, &s0, &s1);
    dw_vectors(g.c_out, [&](auto kind, int64_t off, int64_t cnt) {
      constexpr bool Full = decltype(kind)::value;
      dw_fwd_border<Full>(y, xrows, wk, bias, g, relu, ox, s0, s1, off, cnt);
    });
  };
  for (int64_t ox = 0; ox < lo; ++ox) border(ox);
  int64_t ox = lo;
  for (; ox + kFwdBlock <= hi; ox += kFwdBlock) {
    dw_vectors(g.c_out, [&](auto kind, int64_t off, int64_t cnt) {
      constexpr bool Full = decltype(kind)::value;
      dw_fwd_block<kFwdBlock, Full>(y, xrows, wk, bias, g, relu, ox, off, cnt);
    });
  }
  for (; ox < hi; ++ox) {
    dw_vectors(g.c_out, [&](auto kind, int64_t off, int64_t cnt) {
      constexpr bool Full = decltype(kind)::value;
      dw_fwd_block<1, Full>(y, xrows, wk, bias, g, relu, ox, off, cnt);
    });
  }
  for (ox = hi; ox < g.ow; ++ox) border(ox);
}

// ---- dX -----------------------------------------------------------------------------------

// f(d, w) for each tap (r, s) whose output column ox = (ix + pw0 - s * dw) / sw is whole and
// (unless kInterior: then it always is) in [0, ow), in (r, s) order: d points at channel off
// of dyrows[r][ox], w at channel off of wk[r, s].
template <bool kInterior, class F>
inline void dw_dx_taps(const float* const* dyrows, const float* wk, const ConvGeometry& g,
                       int64_t ix, int64_t off, F&& f) {
  const int64_t co = g.c_out;
  for (int64_t r = 0; r < g.kh; ++r) {
    const float* dr = dyrows[r];
    if (!dr) continue;
    const float* wr = wk + r * g.kw * co + off;
    for (int64_t s = 0; s < g.kw; ++s) {
      const int64_t num = ix + g.pw0 - s * g.dw;
      if constexpr (!kInterior) {
        if (num < 0) break;  // decreasing in s
      }
      if (num % g.sw) continue;
      const int64_t ox = num / g.sw;
      if constexpr (!kInterior) {
        if (ox >= g.ow) continue;
      }
      f(dr + ox * co + off, wr + s * co);
    }
  }
}

// NV channel vectors from off of input column ix: the sum over every (r, s) whose output
// column ox = (ix + pw0 - s * dw) / sw is whole and in [0, ow) of dyrows[r][ox] * wk[r, s].
template <int NV, bool Full>
inline void dw_dx_pixel(float* t, const float* const* dyrows, const float* wk,
                        const ConvGeometry& g, int64_t ix, int64_t off, int64_t cnt) {
  V::R acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = V::zero();
  dw_dx_taps<false>(dyrows, wk, g, ix, off, [&](const float* d, const float* w) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      acc[v] = V::fma(dw_load<Full>(d + v * V::W, cnt), dw_load<Full>(w + v * V::W, cnt), acc[v]);
    }
  });
  for (int v = 0; v < NV; ++v) dw_store<Full>(t + ix * g.c_out + off + v * V::W, acc[v], cnt);
}

// P interior input columns ix0, ix0 + sw, ..., ix0 + (P - 1) * sw (every tap that divides
// lands on a real output column, and the same taps divide for all P, at output columns one
// apart), one channel vector: the same sums as dw_dx_pixel, P chains sharing each weight load.
template <int P, bool Full>
inline void dw_dx_block(float* t, const float* const* dyrows, const float* wk,
                        const ConvGeometry& g, int64_t ix0, int64_t off, int64_t cnt) {
  const int64_t co = g.c_out;
  V::R acc[P];
  for (int p = 0; p < P; ++p) acc[p] = V::zero();
  dw_dx_taps<true>(dyrows, wk, g, ix0, off, [&](const float* d, const float* w) {
    const V::R wv = dw_load<Full>(w, cnt);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) acc[p] = V::fma(dw_load<Full>(d + p * co, cnt), wv, acc[p]);
  });
  for (int p = 0; p < P; ++p) dw_store<Full>(t + (ix0 + p * g.sw) * co + off, acc[p], cnt);
}

constexpr int kDxVectors = 4;  // channel vectors per border column (independent FMA chains)
constexpr int kDxBlock = 8;    // interior columns per block

// Border column ix: every channel, kDxVectors vectors at a time.
__attribute__((always_inline)) inline void dw_dx_border(float* t, const float* const* dyrows, const float* wk,
                         const ConvGeometry& g, int64_t ix) {
  const int64_t co = g.c_out;
  const int64_t full = co / V::W, blocks = full / kDxVectors * kDxVectors;
  int64_t v = 0;
  for (; v < blocks; v += kDxVectors) {
    dw_dx_pixel<kDxVectors, true>(t, dyrows, wk, g, ix, v * V::W, V::W);
  }
  for (; v < full; ++v) dw_dx_pixel<1, true>(t, dyrows, wk, g, ix, v * V::W, V::W);
  if (full * V::W < co) dw_dx_pixel<1, false>(t, dyrows, wk, g, ix, full * V::W, co - full * V::W);
}

void dw_input_grad_row(float* t, const float* const* dyrows, const float* wk,
                       const ConvGeometry& g) {
  // interior columns: ix + pw0 - s * dw in [0, (ow - 1) * sw] for every s
  const int64_t lo = std::min(g.w, std::max<int64_t>(0, (g.kw - 1) * g.dw - g.pw0));
  const int64_t hi = std::max(lo, std::min(g.w, (g.ow - 1) * g.sw - g.pw0 + 1));
  for (int64_t ix = 0; ix < lo; ++ix) dw_dx_border(t, dyrows, wk, g, ix);
  for (int64_t ix = hi; ix < g.w; ++ix) dw_dx_border(t, dyrows, wk, g, ix);
  // each residue class mod sw: columns base, base + sw, ... below hi, in blocks
  for (int64_t base = lo; base < std::min(hi, lo + g.sw); ++base) {
    const int64_t count = (hi - base + g.sw - 1) / g.sw;
    int64_t i = 0;
    for (; i + kDxBlock <= count; i += kDxBlock) {
      dw_vectors(g.c_out, [&](auto kind, int64_t off, int64_t cnt) {
        constexpr bool Full = decltype(kind)::value;
        dw_dx_block<kDxBlock, Full>(t, dyrows, wk, g, base + i * g.sw, off, cnt);
      });
    }
    for (; i < count; ++i) dw_dx_border(t, dyrows, wk, g, base + i * g.sw);
  }
}

// ---- dW, db -------------------------------------------------------------------------------

// Sum over i in [0, count) of f(i) (V vectors) in four interleaved partial sums, combined as
// (p0 + p1) + (p2 + p3).
template <class F>
inline V::R dw_sum4(int64_t count, F f) {
  V::R p0 = V::zero(), p1 = V::zero(), p2 = V::zero(), p3 = V::zero();
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    p0 = f(i, p0);
    p1 = f(i + 1, p1);
    p2 = f(i + 2, p2);
    p3 = f(i + 3, p3);
  }
  if (i < count) p0 = f(i, p0);
  if (i + 1 < count) p1 = f(i + 1, p1);
  if (i + 2 < count) p2 = f(i + 2, p2);
  return V::add(V::add(p0, p1), V::add(p2, p3));
}

void dw_weight_grad_row(float* pw, float* pb, const float* dy, const float* const* xrows,
                        const ConvGeometry& g) {
  const int64_t co = g.c_out;
  if (pb) {
    dw_vectors(co, [&](auto kind, int64_t off, int64_t cnt) {
      constexpr bool Full = decltype(kind)::value;
      const V::R s = dw_sum4(g.ow, [&](int64_t ox, V::R acc) {
        return V::add(acc, dw_load<Full>(dy + ox * co + off, cnt));
      });
      dw_store<Full>(pb + off, V::add(dw_load<Full>(pb + off, cnt), s), cnt);
    });
  }
  if (!pw) return;
  for (int64_t r = 0; r < g.kh; ++r) {
    const float* xr = xrows[r];
    if (!xr) continue;
    for (int64_t s = 0; s < g.kw; ++s) {
      // the output columns whose tap s is a real pixel: 0 <= ox * sw - pw0 + s * dw < w
      const int64_t shift = s * g.dw - g.pw0;
      const int64_t lo = shift >= 0 ? 0 : (-shift + g.sw - 1) / g.sw;
      const int64_t last = g.w - 1 - shift;
      const int64_t hi = last < 0 ? 0 : std::min(g.ow, last / g.sw + 1);
      if (hi <= lo) continue;
      const float* xs = xr + (lo * g.sw + shift) * co;
      const float* ds = dy + lo * co;
      float* out = pw + (r * g.kw + s) * co;
      const int64_t step = g.sw * co;
      dw_vectors(co, [&](auto kind, int64_t off, int64_t cnt) {
        constexpr bool Full = decltype(kind)::value;
        const V::R sum = dw_sum4(hi - lo, [&](int64_t i, V::R acc) {
          return V::fma(dw_load<Full>(ds + i * co + off, cnt),
                        dw_load<Full>(xs + i * step + off, cnt), acc);
        });
        dw_store<Full>(out + off, V::add(dw_load<Full>(out + off, cnt), sum), cnt);
      });
    }
  }
}

}  // namespace
}  // namespace sg
