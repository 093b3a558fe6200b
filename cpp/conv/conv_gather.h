// The convolution's operand gathers: GEMM pack sources that write the micropanels the ISA's
// packers would, straight from the image (forward, stride-phase dL/dx), the weight in torch's
// order, and the im2col columns of dL/dw. Used by conv.cpp's drivers only.
#pragma once
#include <cstdint>

#include "layers/conv_geometry.h"

namespace sg::conv_gather {

// A source: row i is a pixel, depth p = t * nch + ch (tap-major) reads channel ch of the pixel
// that tap t of row i's window touches, or 0 in the padding. Forward: rows are output pixels,
// the tapped pixel is an input pixel. transposed (dL/dx): rows are input pixels, tap t reads the
// output pixel whose window tap t lands on row i's pixel, or 0 where none does (stride gaps,
// borders). Tap t is window tap tap_of(t).
struct ImageGather {
  const ConvGeometry* g;
  const float* src;  // this group's first channel of pixel 0
  int64_t nch;       // channels per tap (the group's)
  int64_t ld;        // floats between consecutive pixels of src
  bool transposed;
};

// One micropanel's rows of an ImageGather, decoded once: each row's pixel (forward: its window
// origin; transposed: the pixel itself), its offset base in src, and whether every row is live
// and its whole window inside the source, so that tap (ky, kx) of row r is src + base[r] +
// tap_offset(ky, kx) with no bounds tests (the common case away from the borders).
struct RowPixel {
  int64_t n, y, x;
  bool live;  // false past the last row: the micropanel's zero rows
};
constexpr int kMaxRows = 32;  // the largest micropanel height (MR) of any ISA
struct TileRows {
  RowPixel px[kMaxRows];
  int64_t base[kMaxRows];
  bool inner;
};
// Inline: the gathers call it with their compile-time MR, so its loop unrolls there.
inline void decode_rows(const ImageGather& s, int64_t i0, int64_t rows, int64_t MR, TileRows& t) {
  const ConvGeometry& g = *s.g;
  const int64_t ph = s.transposed ? g.h : g.oh, pw = s.transposed ? g.w : g.ow;
  t.inner = s.transposed ? g.sh == 1 && g.sw == 1 : true;
  int64_t n = i0 / (ph * pw), y = i0 / pw % ph, x = i0 % pw;
  for (int64_t r = 0; r < MR; ++r) {
    const RowPixel& q = t.px[r] = s.transposed
                                      ? RowPixel{n, y, x, r < rows}
                                      : RowPixel{n, y * g.sh - g.ph0, x * g.sw - g.pw0, r < rows};
    if (!s.transposed) {
      t.base[r] = ((q.n * g.h + q.y) * g.w + q.x) * s.ld;
      t.inner = t.inner && q.live && q.y >= 0 && q.y + (g.kh - 1) * g.dh < g.h && q.x >= 0 &&
                q.x + (g.kw - 1) * g.dw < g.w;
    } else {  // stride 1: tap (ky, kx) reads output pixel (y + ph0 - ky dh, x + pw0 - kx dw)
      t.base[r] = ((q.n * g.oh + q.y + g.ph0) * g.ow + q.x + g.pw0) * s.ld;
      t.inner = t.inner && q.live && q.y + g.ph0 - (g.kh - 1) * g.dh >= 0 && q.y + g.ph0 < g.oh &&
                q.x + g.pw0 - (g.kw - 1) * g.dw >= 0 && q.x + g.pw0 < g.ow;
    }
    if (++x == pw) x = 0, y = y + 1 == ph ? (++n, 0) : y + 1;
  }
}


inline int64_t tap_offset(const ImageGather& s, int64_t ky, int64_t kx) {
  const ConvGeometry& g = *s.g;
  return s.transposed ? -(ky * g.dh * g.ow + kx * g.dw) * s.ld : (ky * g.dh * g.w + kx * g.dw) * s.ld;
}
// The offset of window row ky's run from a dense row's base: its first tap in depth order
// (kx = 0 forward, kx = kw - 1 transposed).
inline int64_t dense_row_offset(const ImageGather& s, int64_t ky) {
  return tap_offset(s, ky, s.transposed ? s.g->kw - 1 : 0);
}

// The window tap (ky, kx) at depth tap t of a gather. Forward: t = ky * kw + kx. Transposed: kx
// runs backwards (t = ky * kw + kw - 1 - kx), so that a window row's taps read output pixels in
// ascending address order (tap kx reads pixel x + pw0 - kx dw): see dense_window_rows. The
// dL/dx weight gather uses the same order (transposed_taps).
inline void tap_of(const ImageGather& s, int64_t t, int64_t& ky, int64_t& kx) {
  ky = t / s.g->kw, kx = t % s.g->kw;
  if (s.transposed) kx = s.g->kw - 1 - kx;
}

// Inner rows of one group with dense windows: the kw taps of window row ky are one contiguous
// run of kw * nch floats per pixel (a 1- or 3-channel image would otherwise set up MR pointers
// per tap for 1 or 3 floats each; a 16-channel dL/dx would run its microkernel over 9 runs of
// 16, not 3 of 48), at base[r] + dense_row_offset(s, ky). Transposed rows are inner only at
// stride 1.
inline bool dense_window_rows(const ImageGather& s, const TileRows& t) {
  return t.inner && s.g->dw == 1 && s.ld == s.nch;
}

// The source address of tap (ky, kx) for one row, or null (padding, stride gap, dead row).
inline const float* tap_source(const ImageGather& s, const RowPixel& r, int64_t ky, int64_t kx) {
  const ConvGeometry& g = *s.g;
  if (!r.live) return nullptr;
  if (!s.transposed) {
    const int64_t iy = r.y + ky * g.dh, ix = r.x + kx * g.dw;
    if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return nullptr;
    return s.src + ((r.n * g.h + iy) * g.w + ix) * s.ld;
  }
  const int64_t ny = r.y + g.ph0 - ky * g.dh, nx = r.x + g.pw0 - kx * g.dw;
  if (ny < 0 || nx < 0) return nullptr;
  int64_t oy = ny, ox = nx;
  if (g.sh != 1 || g.sw != 1) {  // only every stride-th pixel starts a window
    if (ny % g.sh || nx % g.sw) return nullptr;
    oy = ny / g.sh, ox = nx / g.sw;
  }
  if (oy >= g.oh || ox >= g.ow) return nullptr;
  return s.src + ((r.n * g.oh + oy) * g.ow + ox) * s.ld;
}

// dL/dx of a strided convolution, one stride phase at a time: the input pixels (iy, ix) with
// iy = ry + sh * a, ix = rx + sw * b share the window taps that land on them, (ky, kx) with
// sh | ry + ph0 - ky dh and sw | rx + pw0 - kx dw, and tap (ky, kx) reads output pixel
// (a + qy, b + qx), qy = (ry + ph0 - ky dh) / sh (exact). A source: row i is phase pixel
// (n, a, b) over (n, hp, wp), depth p = u * nch + co over the phase's taps u = uy * ntx + ux.
// The other taps of the full gather would only read zeros (about 3/4 of them at stride 2).
struct PhaseGather {
  const ConvGeometry* g;
  const float* src;  // this group's first channel of output pixel 0 (dy)
  int64_t nch, ld;   // channels per tap (cog), floats between pixels (c_out)
  int64_t hp, wp;    // the phase's rows and columns of input pixels
  const int64_t* qy;  // per tap row uy: the output row offset
  const int64_t* qx;  // per tap column ux: the output column offset
  int64_t ntx;
};

// The taps of one stride phase along one axis: the n window positions k (0 <= k < kk) with
// s | r + pad - k dil, their output offsets q = (r + pad - k dil) / s (both arrays of kk held
// by the caller; null: only counted), and the phase's pixel count (positions r, r + s, ...
// below len).
struct PhaseAxis {
  const int64_t* k;
  const int64_t* q;
  int64_t n;
  int64_t pixels;
};

// B source over the weight in torch's (c_out, cig, kh, kw) order: element (p, j), depth
// p = t * nin + inner, is w[j * sj + inner * si + t]. Forward: j = co, inner = ci; dL/dx:
// j = ci, inner = co.
struct WeightGather {
  const float* w;  // the group's first output channel
  int64_t nin, sj, si;
  const int64_t* taps = nullptr;  // depth tap u is window tap taps[u] (null: u itself, or:)
  int64_t reverse_kw = 0;  // > 0: u is window tap (u / kw) kw + kw - 1 - u % kw (tap_of's order)
};

// B source for dL/dw: the im2col as the GEMM's B, element (p, j) with p an output pixel and
// j = t * cig + ci (tap-major, so a micropanel row is a few contiguous runs of channels):
// channel ci of the input pixel tap t of pixel p's window touches, or 0 in the padding. The
// product is dL/dw with its (cig, T) part of each row permuted to (T, cig): see
// permute_weight_rows.
struct ColumnGather {
  const ConvGeometry* g;
  const float* x;  // the group's first input channel
  int64_t cig;
};

// The GEMM pack sources (GemmPackSource::pack) over the structs above.
void pack_image(const void* ctx, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                int64_t width, float* d);
void pack_phase(const void* ctx, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                int64_t width, float* d);
void pack_weight(const void* ctx, int64_t j0, int64_t cols, int64_t p0, int64_t kc,
                 int64_t width, float* d);
void pack_columns(const void* ctx, int64_t j0, int64_t cols, int64_t p0, int64_t kc,
                  int64_t width, float* d);
PhaseAxis phase_axis(int64_t r, int64_t len, int64_t kk, int64_t s, int64_t dil, int64_t pad,
                     int64_t* k, int64_t* q);

}  // namespace sg::conv_gather
