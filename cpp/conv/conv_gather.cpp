// Bodies of the convolution's operand gathers (conv_gather.h). Portable code: what they cost
// is loads and stores; the ISA part is the GEMM microkernel they feed.
#include "conv/conv_gather.h"

#include <algorithm>
#include <vector>

namespace sg::conv_gather {

// Channels [c0, c1) of a tap's MR row sources into the micropanel (MR floats per k step), 0
// where a source is null; `all`: none is (the common case away from the borders, copied with
// no per-element test). kMR as below.
template <int kMR>
inline void copy_tap_rows(const float* const* sp, int64_t width, int64_t c0, int64_t c1, bool all,
                          float* dd) {
  const int64_t MR = kMR ? kMR : width;
  if (all) {
    for (int64_t c = c0; c < c1; ++c, dd += MR) {
#pragma GCC unroll 16
      for (int64_t r = 0; r < MR; ++r) dd[r] = sp[r][c];
    }
  } else {
    for (int64_t c = c0; c < c1; ++c, dd += MR) {
#pragma GCC unroll 16
      for (int64_t r = 0; r < MR; ++r) dd[r] = sp[r] ? sp[r][c] : 0.0f;
    }
  }
}

// kMR: the micropanel height when it is one the ISAs use (the copies unroll), 0 for any.
template <int kMR>
void gather_image_rows(const ImageGather& s, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                       int64_t width, float* d) {
  constexpr int kCap = kMR ? kMR : kMaxRows;
  const int64_t MR = kMR ? kMR : width;
  const ConvGeometry& g = *s.g;
  TileRows tr;
  decode_rows(s, i0, rows, MR, tr);
  const RowPixel* px = tr.px;
  const int64_t* base = tr.base;
  const bool inner = tr.inner;
  const int64_t nch = s.nch;
  if (dense_window_rows(s, tr)) {
    // A window row's kw taps copied as one run (see dense_window_rows).
    const int64_t row_len = g.kw * nch;
    for (int64_t ky = p0 / row_len; ky * row_len < p0 + kc; ++ky) {
      const int64_t c0 = std::max(p0, ky * row_len) - ky * row_len;
      const int64_t c1 = std::min(p0 + kc, (ky + 1) * row_len) - ky * row_len;
      const float* sp[kCap];
      const int64_t delta = dense_row_offset(s, ky);
      for (int64_t r = 0; r < MR; ++r) sp[r] = s.src + (base[r] + delta);
      float* dd = d + (ky * row_len + c0 - p0) * MR;
      for (int64_t c = c0; c < c1; ++c, dd += MR) {
#pragma GCC unroll 16
        for (int64_t r = 0; r < MR; ++r) dd[r] = sp[r][c];
      }
    }
    return;
  }
  const int64_t t0 = p0 / nch, t1 = (p0 + kc - 1) / nch;
  for (int64_t t = t0; t <= t1; ++t) {
    int64_t ky, kx;
    tap_of(s, t, ky, kx);
    const float* sp[kCap];
    bool all = true;
    if (inner) {
      const int64_t delta = tap_offset(s, ky, kx);
      for (int64_t r = 0; r < MR; ++r) sp[r] = s.src + (base[r] + delta);
    } else {
      for (int64_t r = 0; r < MR; ++r) {
        sp[r] = tap_source(s, px[r], ky, kx);
        all = all && sp[r];
      }
    }
    const int64_t c0 = std::max(p0, t * nch) - t * nch;
    const int64_t c1 = std::min(p0 + kc, (t + 1) * nch) - t * nch;
    float* dd = d + (t * nch + c0 - p0) * MR;
    copy_tap_rows<kMR>(sp, MR, c0, c1, all, dd);
  }
}

void pack_image(const void* ctx, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                int64_t width, float* d) {
  const ImageGather& s = *static_cast<const ImageGather*>(ctx);
  switch (width) {  // the MR of the generic/avx2 and avx512 microkernels
    case 6: return gather_image_rows<6>(s, i0, rows, p0, kc, width, d);
    case 14: return gather_image_rows<14>(s, i0, rows, p0, kc, width, d);
    default: return gather_image_rows<0>(s, i0, rows, p0, kc, width, d);
  }
}


// kMR as in gather_image_rows: the ISAs' micropanel heights get unrolled copies.
template <int kMR>
void gather_phase_rows(const PhaseGather& s, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                       int64_t width, float* d) {
  constexpr int kCap = kMR ? kMR : kMaxRows;
  const int64_t MR = kMR ? kMR : width;
  const ConvGeometry& g = *s.g;
  const int64_t nch = s.nch;
  int64_t pn[kCap], pa[kCap], pb[kCap];
  {
    int64_t n = i0 / (s.hp * s.wp), a = i0 / s.wp % s.hp, b = i0 % s.wp;
    for (int64_t r = 0; r < MR; ++r) {
      pn[r] = r < rows ? n : -1, pa[r] = a, pb[r] = b;
      if (++b == s.wp) b = 0, a = a + 1 == s.hp ? (++n, 0) : a + 1;
    }
  }
  const int64_t u0 = p0 / nch, u1 = (p0 + kc - 1) / nch;
  for (int64_t u = u0; u <= u1; ++u) {
    const int64_t qy = s.qy[u / s.ntx], qx = s.qx[u % s.ntx];
    const float* sp[kCap];
    bool all = true;
    for (int64_t r = 0; r < MR; ++r) {
      const int64_t oy = pa[r] + qy, ox = pb[r] + qx;
      sp[r] = pn[r] >= 0 && oy >= 0 && oy < g.oh && ox >= 0 && ox < g.ow
                  ? s.src + ((pn[r] * g.oh + oy) * g.ow + ox) * s.ld
                  : nullptr;
      all = all && sp[r];
    }
    const int64_t c0 = std::max(p0, u * nch) - u * nch;
    const int64_t c1 = std::min(p0 + kc, (u + 1) * nch) - u * nch;
    float* dd = d + (u * nch + c0 - p0) * MR;
    copy_tap_rows<kMR>(sp, MR, c0, c1, all, dd);
  }
}

void pack_phase(const void* ctx, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                int64_t width, float* d) {
  const PhaseGather& s = *static_cast<const PhaseGather*>(ctx);
  switch (width) {  // as pack_image
    case 6: return gather_phase_rows<6>(s, i0, rows, p0, kc, width, d);
    case 14: return gather_phase_rows<14>(s, i0, rows, p0, kc, width, d);
    default: return gather_phase_rows<0>(s, i0, rows, p0, kc, width, d);
  }
}


PhaseAxis phase_axis(int64_t r, int64_t len, int64_t kk, int64_t s, int64_t dil, int64_t pad,
                     int64_t* k, int64_t* q) {
  PhaseAxis ax{k, q, 0, r < len ? (len - r + s - 1) / s : 0};
  for (int64_t t = 0; t < kk; ++t) {
    const int64_t v = r + pad - t * dil;
    if (((v % s) + s) % s != 0) continue;
    if (k) k[ax.n] = t, q[ax.n] = v / s;
    ++ax.n;
  }
  return ax;
}

void pack_weight(const void* ctx, int64_t j0, int64_t cols, int64_t p0, int64_t kc,
                 int64_t width, float* d) {
  const WeightGather& s = *static_cast<const WeightGather*>(ctx);
  const int64_t NR = width;
  for (int64_t q = 0; q * NR < cols; ++q) {
    const int64_t jn = std::min(NR, cols - q * NR);
    const float* wj = s.w + (j0 + q * NR) * s.sj;
    float* dq = d + q * NR * kc;
    int64_t t = p0 / s.nin, in = p0 % s.nin;
    for (int64_t p = 0; p < kc; ++p, dq += NR) {
      const int64_t kw = s.reverse_kw;
      const float* src = wj + in * s.si + (s.taps ? s.taps[t] : kw ? t / kw * kw + kw - 1 - t % kw : t);
      for (int64_t jj = 0; jj < jn; ++jj) dq[jj] = src[jj * s.sj];
      for (int64_t jj = jn; jj < NR; ++jj) dq[jj] = 0.0f;
      if (++in == s.nin) in = 0, ++t;
    }
  }
}


void pack_columns(const void* ctx, int64_t j0, int64_t cols, int64_t p0, int64_t kc,
                  int64_t width, float* d) {
  const ColumnGather& s = *static_cast<const ColumnGather*>(ctx);
  const ConvGeometry& g = *s.g;
  const int64_t NR = width, cig = s.cig;
  const int64_t t_lo = j0 / cig, t_hi = (j0 + cols - 1) / cig;  // the taps these columns use
  // The same for every pixel, so worked out once: each tap's offsets, and each micropanel
  // row as runs (tap, first channel, where in the block, length).
  struct Run {
    int64_t t, ci, dst, len;
  };
  struct Tap {
    int64_t dy, dx, delta;  // ky*dh, kx*dw, and the source offset from the window origin
  };
  // A pixel whose window lies inside the image copies `spans` instead: the runs with the
  // taps' offsets folded in, and neighbouring runs merged where the source continues (the
  // kw taps of a window row are one contiguous run of kw * c_in floats when dw == 1 and
  // groups == 1): a 1- or 3-channel image copies 5 runs per pixel of a 5x5 window, not 25.
  struct Span {
    int64_t src, dst, len;  // from the window origin, into the pixel's row of the block
  };
  thread_local std::vector<Run> runs;
  thread_local std::vector<Span> spans;
  thread_local std::vector<Tap> taps;
  thread_local std::vector<const float*> tap_src;
  runs.clear(), spans.clear(), taps.resize(t_hi - t_lo + 1), tap_src.resize(t_hi - t_lo + 1);
  for (int64_t t = t_lo; t <= t_hi; ++t) {
    const int64_t dy = t / g.kw * g.dh, dx = t % g.kw * g.dw;
    taps[t - t_lo] = {dy, dx, (dy * g.w + dx) * g.c_in};
  }
  for (int64_t q = 0; q * NR < cols; ++q) {
    const int64_t jb = j0 + q * NR, je = std::min(j0 + cols, jb + NR);
    for (int64_t j = jb; j < je;) {
      const int64_t t = j / cig, ci = j % cig, len = std::min(cig - ci, je - j);
      runs.push_back({t - t_lo, ci, q * NR * kc + (j - jb), len});
      const int64_t src = taps[t - t_lo].delta + ci;
      if (!spans.empty() && spans.back().src + spans.back().len == src &&
          spans.back().dst + spans.back().len == runs.back().dst) {
        spans.back().len += len;
      } else {
        spans.push_back({src, runs.back().dst, len});
      }
      j += len;
    }
  }
  const int64_t plane = g.oh * g.ow, ntaps = t_hi - t_lo + 1;
  const int64_t pad_from = cols % NR, last = (cols - 1) / NR;  // the last panel's zero columns
  int64_t n = p0 / plane, oy = p0 / g.ow % g.oh, ox = p0 % g.ow;
  for (int64_t p = 0; p < kc; ++p) {
    const int64_t y0 = oy * g.sh - g.ph0, x0 = ox * g.sw - g.pw0;
    float* dp = d + p * NR;
    if (y0 >= 0 && y0 + (g.kh - 1) * g.dh < g.h && x0 >= 0 && x0 + (g.kw - 1) * g.dw < g.w) {
      const float* origin = s.x + ((n * g.h + y0) * g.w + x0) * g.c_in;
      for (const Span& r : spans) {
        const float* src = origin + r.src;
        float* dst = dp + r.dst;
        for (int64_t c = 0; c < r.len; ++c) dst[c] = src[c];
      }
    } else {
      for (int64_t i = 0; i < ntaps; ++i) {
        const int64_t iy = y0 + taps[i].dy, ix = x0 + taps[i].dx;
        tap_src[i] = iy < 0 || iy >= g.h || ix < 0 || ix >= g.w
                         ? nullptr
                         : s.x + ((n * g.h + iy) * g.w + ix) * g.c_in;
      }
      for (const Run& r : runs) {
        const float* src = tap_src[r.t];
        float* dst = dp + r.dst;
        if (src) {
          for (int64_t c = 0; c < r.len; ++c) dst[c] = src[r.ci + c];
        } else {
          for (int64_t c = 0; c < r.len; ++c) dst[c] = 0.0f;
        }
      }
    }
    if (pad_from) {
      for (int64_t jj = pad_from; jj < NR; ++jj) dp[last * NR * kc + jj] = 0.0f;
    }
    if (++ox == g.ow) ox = 0, oy = oy + 1 == g.oh ? (++n, 0) : oy + 1;
  }
}

}  // namespace sg::conv_gather
