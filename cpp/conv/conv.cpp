// Convolution drivers: each direction is one GEMM per group whose operands the GEMM's packing
// step gathers from the image and the weight (GemmPackSource), so no im2col matrix and no
// permuted weight is ever stored. The gathers are portable code: what they cost is loads and
// stores, the ISA part is the GEMM microkernel. They write exactly what the ISA's packers would,
// so the GEMM's properties hold: blocking from the shapes alone, K never split, bitwise equal
// results for any thread count.
#include "conv/conv.h"

#include <algorithm>
#include <vector>

#include "gemm/gemm.h"
#include "layers/linear.h"  // the bias gradient's deterministic column sum

namespace sg {
namespace {

// A source: row i is a pixel, depth p = t * nch + ch (tap-major) reads channel ch of the pixel
// that tap t of row i's window touches, or 0 in the padding. Forward: rows are output pixels,
// the tapped pixel is an input pixel. transposed (dL/dx): rows are input pixels, tap t reads the
// output pixel whose window tap t lands on row i's pixel, or 0 where none does (stride gaps,
// borders).
struct ImageGather {
  const ConvGeometry* g;
  const float* src;  // this group's first channel of pixel 0
  int64_t nch;       // channels per tap (the group's)
  int64_t ld;        // floats between consecutive pixels of src
  bool transposed;
};

// Row i's pixel decoded once per micropanel: image index and the window origin (forward) or
// the pixel itself (transposed).
struct RowPixel {
  int64_t n, y, x;
  bool live;  // false past the last row: the micropanel's zero rows
};

// The source address of tap (ky, kx) for one row, or null.
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

// kMR: the micropanel height when it is one the ISAs use (the copies unroll), 0 for any.
template <int kMR>
void gather_image_rows(const ImageGather& s, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                       int64_t width, float* d) {
  constexpr int kCap = kMR ? kMR : 32;
  const int64_t MR = kMR ? kMR : width;
  const ConvGeometry& g = *s.g;
  const int64_t ph = s.transposed ? g.h : g.oh, pw = s.transposed ? g.w : g.ow;
  RowPixel px[kCap];
  // Rows whose whole window lies inside the source (the common case away from the borders):
  // tap t then reads base[r] + the tap's fixed offset, with no bounds tests.
  int64_t base[kCap];
  bool inner = s.transposed ? g.sh == 1 && g.sw == 1 : true;
  {
    int64_t n = i0 / (ph * pw), y = i0 / pw % ph, x = i0 % pw;
    for (int64_t r = 0; r < MR; ++r) {
      const RowPixel& q = px[r] = s.transposed
                                      ? RowPixel{n, y, x, r < rows}
                                      : RowPixel{n, y * g.sh - g.ph0, x * g.sw - g.pw0, r < rows};
      if (!s.transposed) {
        base[r] = ((q.n * g.h + q.y) * g.w + q.x) * s.ld;
        inner = inner && q.live && q.y >= 0 && q.y + (g.kh - 1) * g.dh < g.h && q.x >= 0 &&
                q.x + (g.kw - 1) * g.dw < g.w;
      } else {  // stride 1: tap (ky, kx) reads output pixel (y + ph0 - ky dh, x + pw0 - kx dw)
        base[r] = ((q.n * g.oh + q.y + g.ph0) * g.ow + q.x + g.pw0) * s.ld;
        inner = inner && q.live && q.y + g.ph0 - (g.kh - 1) * g.dh >= 0 && q.y + g.ph0 < g.oh &&
                q.x + g.pw0 - (g.kw - 1) * g.dw >= 0 && q.x + g.pw0 < g.ow;
      }
      if (++x == pw) x = 0, y = y + 1 == ph ? (++n, 0) : y + 1;
    }
  }
  const int64_t nch = s.nch;
  if (inner && !s.transposed && g.dw == 1 && s.ld == nch) {
    // One group, dense window rows: the kw taps of window row ky are one contiguous run of
    // kw * nch floats per pixel, copied as one (a 1- or 3-channel image would otherwise set up
    // MR pointers per tap for 1 or 3 floats each).
    const int64_t row_len = g.kw * nch;
    for (int64_t ky = p0 / row_len; ky * row_len < p0 + kc; ++ky) {
      const int64_t c0 = std::max(p0, ky * row_len) - ky * row_len;
      const int64_t c1 = std::min(p0 + kc, (ky + 1) * row_len) - ky * row_len;
      const float* sp[kCap];
      for (int64_t r = 0; r < MR; ++r) sp[r] = s.src + (base[r] + ky * g.dh * g.w * s.ld);
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
    const int64_t ky = t / g.kw, kx = t % g.kw;
    const float* sp[kCap];
    bool all = true;
    if (inner) {
      const int64_t delta = s.transposed ? -(ky * g.dh * g.ow + kx * g.dw) * s.ld
                                         : (ky * g.dh * g.w + kx * g.dw) * s.ld;
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

void pack_phase(const void* ctx, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                int64_t width, float* d) {
  const PhaseGather& s = *static_cast<const PhaseGather*>(ctx);
  const ConvGeometry& g = *s.g;
  const int64_t MR = width, nch = s.nch;
  constexpr int64_t kCap = 32;
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
    for (int64_t r = 0; r < MR; ++r) {
      const int64_t oy = pa[r] + qy, ox = pb[r] + qx;
      sp[r] = pn[r] >= 0 && oy >= 0 && oy < g.oh && ox >= 0 && ox < g.ow
                  ? s.src + ((pn[r] * g.oh + oy) * g.ow + ox) * s.ld
                  : nullptr;
    }
    const int64_t c0 = std::max(p0, u * nch) - u * nch;
    const int64_t c1 = std::min(p0 + kc, (u + 1) * nch) - u * nch;
    float* dd = d + (u * nch + c0 - p0) * MR;
    for (int64_t c = c0; c < c1; ++c, dd += MR) {
      for (int64_t r = 0; r < MR; ++r) dd[r] = sp[r] ? sp[r][c] : 0.0f;
    }
  }
}

// The taps of one stride phase along one axis: window positions k (0 <= k < kk) with
// s | r + pad - k dil, their output offsets (r + pad - k dil) / s, and the phase's pixel count
// (positions r, r + s, ... below len).
struct PhaseAxis {
  std::vector<int64_t> k, q;
  int64_t pixels;
};

PhaseAxis phase_axis(int64_t r, int64_t len, int64_t kk, int64_t s, int64_t dil, int64_t pad) {
  PhaseAxis ax;
  for (int64_t k = 0; k < kk; ++k) {
    const int64_t v = r + pad - k * dil;
    if (((v % s) + s) % s == 0) ax.k.push_back(k), ax.q.push_back(v / s);
  }
  ax.pixels = r < len ? (len - r + s - 1) / s : 0;
  return ax;
}

// B source over the weight in torch's (c_out, cig, kh, kw) order: element (p, j), depth
// p = t * nin + inner, is w[j * sj + inner * si + t]. Forward: j = co, inner = ci; dL/dx:
// j = ci, inner = co.
struct WeightGather {
  const float* w;  // the group's first output channel
  int64_t nin, sj, si;
  const int64_t* taps = nullptr;  // depth tap u is window tap taps[u] (null: u itself)
};

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
      const float* src = wj + in * s.si + (s.taps ? s.taps[t] : t);
      for (int64_t jj = 0; jj < jn; ++jj) dq[jj] = src[jj * s.sj];
      for (int64_t jj = jn; jj < NR; ++jj) dq[jj] = 0.0f;
      if (++in == s.nin) in = 0, ++t;
    }
  }
}

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

// Each of `rows` rows of dw (row stride `depth` = cig * taps) between torch's order (ci, t)
// and the tap-major (t, ci) of the dL/dw GEMM: to_taps, else back. Exact copies.
void permute_weight_rows(float* dw, int64_t rows, int64_t cig, int64_t taps, bool to_taps) {
  if (cig == 1 || taps == 1) return;  // the two orders coincide
  thread_local std::vector<float> tmp;
  tmp.resize(cig * taps);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = dw + r * cig * taps;
    std::copy(row, row + cig * taps, tmp.begin());
    for (int64_t ci = 0; ci < cig; ++ci) {
      for (int64_t t = 0; t < taps; ++t) {
        if (to_taps) row[t * cig + ci] = tmp[ci * taps + t];
        else row[ci * taps + t] = tmp[t * cig + ci];
      }
    }
  }
}

// Per-group sizes of one geometry.
struct GroupDims {
  int64_t cig, cog, taps, depth;  // depth = taps * cig: the forward's and dL/dw's K
};

GroupDims group_dims(const ConvGeometry& g) {
  const int64_t cig = g.c_in / g.groups, taps = g.kh * g.kw;
  return {cig, g.c_out / g.groups, taps, taps * cig};
}

// Calls fn(ry, rx, rows axis, columns axis) for each stride phase of the input pixels.
template <class Fn>
void for_each_phase(const ConvGeometry& g, Fn&& fn) {
  for (int64_t ry = 0; ry < g.sh; ++ry) {
    const PhaseAxis ay = phase_axis(ry, g.h, g.kh, g.sh, g.dh, g.ph0);
    for (int64_t rx = 0; rx < g.sw; ++rx) {
      fn(ry, rx, ay, phase_axis(rx, g.w, g.kw, g.sw, g.dw, g.pw0));
    }
  }
}

// dx_g of a strided convolution: per stride phase, a dense gather GEMM over the phase's taps
// into a scratch block (rows: the phase's pixels, which are not evenly spaced in dx), then
// copied to its pixels; a phase no tap reaches (a 1x1 window at stride 2) is zero.
void conv2d_dx_phases(float* dxg, const float* dyg, const float* wg, const ConvGeometry& g,
                      const GroupDims& d) {
  thread_local std::vector<float> block;
  thread_local std::vector<int64_t> tap_of;
  for_each_phase(g, [&](int64_t ry, int64_t rx, const PhaseAxis& ay, const PhaseAxis& ax) {
    const int64_t hp = ay.pixels, wp = ax.pixels, rows = g.n * hp * wp;
    const int64_t nty = static_cast<int64_t>(ay.k.size()), ntx = static_cast<int64_t>(ax.k.size());
    if (rows == 0) return;
    if (nty * ntx > 0) {
      tap_of.clear();
      for (const int64_t ky : ay.k)
        for (const int64_t kx : ax.k) tap_of.push_back(ky * g.kw + kx);
      block.resize(static_cast<size_t>(rows * d.cig));
      const PhaseGather as{&g, dyg, d.cog, g.c_out, hp, wp, ay.q.data(), ax.q.data(), ntx};
      const WeightGather bs{wg, d.cog, d.taps, d.depth, tap_of.data()};
      const GemmPackSource a_src{&pack_phase, &as}, b_src{&pack_weight, &bs};
      gemm_f32_src(true, false, rows, d.cig, nty * ntx * d.cog, 1.0f, nullptr, 0, &a_src,
                   nullptr, 0, &b_src, 0.0f, block.data(), d.cig, nullptr, Activation::none);
    }
    const float* src = block.data();
    for (int64_t n = 0; n < g.n; ++n) {
      for (int64_t a = 0; a < hp; ++a) {
        float* row = dxg + ((n * g.h + ry + g.sh * a) * g.w + rx) * g.c_in;
        for (int64_t b = 0; b < wp; ++b) {
          float* px = row + g.sw * b * g.c_in;
          if (nty * ntx > 0) std::copy(src, src + d.cig, px), src += d.cig;
          else std::fill(px, px + d.cig, 0.0f);
        }
      }
    }
  });
}

}  // namespace

bool conv2d_is_pointwise(const ConvGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph0 == 0 && g.ph1 == 0 &&
         g.pw0 == 0 && g.pw1 == 0;
}

void conv2d_forward_f32(float* y, const float* x, const float* w, const float* b,
                        const ConvGeometry& g, Activation act) {
  const GroupDims d = group_dims(g);
  const int64_t m = g.out_pixels();
  const bool pointwise = conv2d_is_pointwise(g);
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    const float* wg = w + grp * d.cog * d.depth;  // (cog, depth): B^T
    float* yg = y + grp * d.cog;
    const float* bg = b ? b + grp * d.cog : nullptr;
    if (pointwise) {
      // y_g (m, cog) = x_g (m, cig) w_g^T
      gemm_f32(false, true, m, d.cog, d.cig, 1.0f, x + grp * d.cig, g.c_in, wg, d.cig, 0.0f, yg,
               g.c_out, bg, act);
      continue;
    }
    const ImageGather as{&g, x + grp * d.cig, d.cig, g.c_in, false};
    const WeightGather bs{wg, d.cig, d.depth, d.taps};  // (t * cig + ci, co) = w[co, ci, t]
    const GemmPackSource a_src{&pack_image, &as}, b_src{&pack_weight, &bs};
    gemm_f32_src(true, false, m, d.cog, d.depth, 1.0f, nullptr, 0, &a_src, nullptr, 0, &b_src,
                 0.0f, yg, g.c_out, bg, act);
  }
}

void conv2d_backward_f32(float* dx, float* dw, float* db, const float* dy, const float* x,
                         const float* w, const ConvGeometry& g, float beta_w, float beta_b) {
  const GroupDims d = group_dims(g);
  const int64_t m = g.out_pixels();
  const bool pointwise = conv2d_is_pointwise(g);
  // dw_g (cog, depth) = dy_g^T (cog, m) col_g (m, depth), before dx (which may overwrite x).
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    float* dwg = dw + grp * d.cog * d.depth;
    const float* dyg = dy + grp * d.cog;
    if (pointwise) {
      gemm_f32(true, false, d.cog, d.cig, m, 1.0f, dyg, g.c_out, x + grp * d.cig, g.c_in, beta_w,
               dwg, d.cig, nullptr, Activation::none);
      continue;
    }
    // Computed tap-major (the gather copies runs of channels), in dw's own memory: an
    // accumulated dw is permuted to that order first, and the result back.
    const ColumnGather bs{&g, x + grp * d.cig, d.cig};
    const GemmPackSource b_src{&pack_columns, &bs};
    if (beta_w != 0.0f) permute_weight_rows(dwg, d.cog, d.cig, d.taps, true);
    gemm_f32_src(true, false, d.cog, d.depth, m, 1.0f, dyg, g.c_out, nullptr, nullptr, 0, &b_src,
                 beta_w, dwg, d.depth, nullptr, Activation::none);
    permute_weight_rows(dwg, d.cog, d.cig, d.taps, false);
  }
  if (db) linear_kernels().colsum(db, dy, m, g.c_out, beta_b);
  if (!dx) return;
  const int64_t mi = g.in_pixels();
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    const float* wg = w + grp * d.cog * d.depth;
    float* dxg = dx + grp * d.cig;
    if (pointwise) {
      // dx_g (mi, cig) = dy_g (mi, cog) w_g (cog, cig)
      gemm_f32(false, false, mi, d.cig, d.cog, 1.0f, dy + grp * d.cog, g.c_out, wg, d.cig, 0.0f,
               dxg, g.c_in, nullptr, Activation::none);
      continue;
    }
    if (g.sh != 1 || g.sw != 1) {
      conv2d_dx_phases(dxg, dy + grp * d.cog, wg, g, d);
      continue;
    }
    const ImageGather as{&g, dy + grp * d.cog, d.cog, g.c_out, true};
    const WeightGather bs{wg, d.cog, d.taps, d.depth};  // (t * cog + co, ci) = w[co, ci, t]
    const GemmPackSource a_src{&pack_image, &as}, b_src{&pack_weight, &bs};
    gemm_f32_src(true, false, mi, d.cig, d.taps * d.cog, 1.0f, nullptr, 0, &a_src, nullptr, 0,
                 &b_src, 0.0f, dxg, g.c_in, nullptr, Activation::none);
  }
}

GemmScratch conv2d_scratch(const ConvGeometry& g, bool input_grad, int64_t threads) {
  // The same (trans_a, m, n, k, lda) as the GEMM calls above (every group has the same
  // shapes; a gathered A is sized as a transposed one, see GemmPackSource).
  const GroupDims d = group_dims(g);
  const int64_t m = g.out_pixels(), mi = g.in_pixels();
  GemmScratch s;
  if (conv2d_is_pointwise(g)) {
    s.add(gemm_workspace(false, m, d.cog, d.cig, g.c_in, threads));
    s.add(gemm_workspace(true, d.cog, d.cig, m, g.c_out, threads));
    if (input_grad) s.add(gemm_workspace(false, mi, d.cig, d.cog, g.c_out, threads));
    return s;
  }
  s.add(gemm_workspace(true, m, d.cog, d.depth, 0, threads));
  s.add(gemm_workspace(true, d.cog, d.depth, m, g.c_out, threads));
  if (!input_grad) return s;
  if (g.sh == 1 && g.sw == 1) {
    s.add(gemm_workspace(true, mi, d.cig, d.taps * d.cog, 0, threads));
    return s;
  }
  // Not counted either: the calling thread's block of the largest phase (rows x cig floats).
  for_each_phase(g, [&](int64_t, int64_t, const PhaseAxis& ay, const PhaseAxis& ax) {
    const int64_t taps = static_cast<int64_t>(ay.k.size() * ax.k.size());
    s.add(gemm_workspace(true, g.n * ay.pixels * ax.pixels, d.cig, taps * d.cog, 0, threads));
  });
  return s;
}

}  // namespace sg
