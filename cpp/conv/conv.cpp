// Convolution drivers: each direction is one GEMM per group whose operands the GEMM's packing
// step gathers from the image and the weight (GemmPackSource), so no im2col matrix and no
// permuted weight is ever stored. The gathers are portable code: what they cost is loads and
// stores, the ISA part is the GEMM microkernel. They write exactly what the ISA's packers would,
// so the GEMM's properties hold: blocking from the shapes alone, K never split, bitwise equal
// results for any thread count.
#include "conv/conv.h"

#include <algorithm>

#include "common/driver_workspace.h"
#include "conv/conv_gather.h"
#include "conv/conv_igemm.h"
#include "gemm/gemm.h"
#include "layers/linear.h"  // the bias gradient's deterministic column sum

namespace sg {
namespace {

using namespace conv_gather;  // NOLINT: the gathers are this file's own operands

// Each of `rows` rows of dw (row stride `depth` = cig * taps) between torch's order (ci, t)
// and the tap-major (t, ci) of the dL/dw GEMM: to_taps, else back, through tmp (one row).
// Exact copies.
void permute_weight_rows(float* dw, float* tmp, int64_t rows, int64_t cig, int64_t taps,
                         bool to_taps) {
  if (cig == 1 || taps == 1) return;  // the two orders coincide
  for (int64_t r = 0; r < rows; ++r) {
    float* row = dw + r * cig * taps;
    std::copy(row, row + cig * taps, tmp);
    for (int64_t ci = 0; ci < cig; ++ci) {
      for (int64_t t = 0; t < taps; ++t) {
        if (to_taps) row[t * cig + ci] = tmp[ci * taps + t];
        else row[ci * taps + t] = tmp[t * cig + ci];
      }
    }
  }
}

// C (m, n) = the gathered image a times the gathered weight b: on the indirect kernel where its
// runs are long enough, else the GEMM with a packed gather (bitwise the same result).
void image_gemm(const ImageGather& a, const WeightGather& b, int64_t m, int64_t n, int64_t k,
                float* c, int64_t ldc, const float* bias, Activation act) {
  const GemmPackSource b_src{&pack_weight, &b};
  if (conv_igemm_pays(a)) return conv_igemm(a, b_src, m, n, k, c, ldc, bias, act);
  const GemmPackSource a_src{&pack_image, &a};
  gemm_f32_src(true, false, m, n, k, 1.0f, nullptr, 0, &a_src, nullptr, 0, &b_src, 0.0f, c, ldc,
               bias, act);
}

GemmWorkspace image_gemm_workspace(const ImageGather& a, int64_t m, int64_t n, int64_t k,
                                   int64_t threads) {
  return conv_igemm_pays(a) ? conv_igemm_workspace(m, n, k, threads)
                            : gemm_workspace(true, m, n, k, 0, threads);
}

// Per-group sizes of one geometry.
struct GroupDims {
  int64_t cig, cog, taps, depth;  // depth = taps * cig: the forward's and dL/dw's K
};

GroupDims group_dims(const ConvGeometry& g) {
  const int64_t cig = g.c_in / g.groups, taps = g.kh * g.kw;
  return {cig, g.c_out / g.groups, taps, taps * cig};
}

// The taps of the phases' two axes (null: only counted).
struct PhaseTaps {
  int64_t *ky = nullptr, *qy = nullptr, *kx = nullptr, *qx = nullptr;
};

// Calls fn(ry, rx, rows axis, columns axis) for each stride phase of the input pixels.
template <class Fn>
void for_each_phase(const ConvGeometry& g, const PhaseTaps& t, Fn&& fn) {
  for (int64_t ry = 0; ry < g.sh; ++ry) {
    const PhaseAxis ay = phase_axis(ry, g.h, g.kh, g.sh, g.dh, g.ph0, t.ky, t.qy);
    for (int64_t rx = 0; rx < g.sw; ++rx) {
      fn(ry, rx, ay, phase_axis(rx, g.w, g.kw, g.sw, g.dw, g.pw0, t.kx, t.qx));
    }
  }
}

// The driver workspace of a strided dx: the taps' tables and the block of the largest phase
// that any tap reaches (rows x cig floats).
struct PhasePieces {
  PhaseTaps taps;
  int64_t* tap_of;
  float* block;
};

PhasePieces phase_pieces(Carver& c, const ConvGeometry& g, const GroupDims& d) {
  int64_t most = 0;
  for_each_phase(g, PhaseTaps{}, [&](int64_t, int64_t, const PhaseAxis& ay, const PhaseAxis& ax) {
    if (ay.n * ax.n > 0) most = std::max(most, g.n * ay.pixels * ax.pixels * d.cig);
  });
  PhasePieces p;
  p.taps = PhaseTaps{c.take<int64_t>(g.kh), c.take<int64_t>(g.kh), c.take<int64_t>(g.kw),
                     c.take<int64_t>(g.kw)};
  p.tap_of = c.take<int64_t>(g.kh * g.kw);
  p.block = c.take<float>(most);
  return p;
}

// dw's permutation row (permute_weight_rows), when dw is not a plain GEMM's.
float* permute_row(Carver& c, const ConvGeometry& g, const GroupDims& d) {
  return conv2d_is_pointwise(g) ? nullptr : c.take<float>(d.depth);
}

// dx_g of a strided convolution: per stride phase, a dense gather GEMM over the phase's taps
// into a scratch block (rows: the phase's pixels, which are not evenly spaced in dx), then
// copied to its pixels; a phase no tap reaches (a 1x1 window at stride 2) is zero.
void conv2d_dx_phases(float* dxg, const float* dyg, const float* wg, const ConvGeometry& g,
                      const GroupDims& d) {
  const PhasePieces pc = carve_workspace([&](Carver& c) { return phase_pieces(c, g, d); });
  for_each_phase(g, pc.taps, [&](int64_t ry, int64_t rx, const PhaseAxis& ay, const PhaseAxis& ax) {
    const int64_t hp = ay.pixels, wp = ax.pixels, rows = g.n * hp * wp;
    const int64_t nty = ay.n, ntx = ax.n;
    if (rows == 0) return;
    if (nty * ntx > 0) {
      int64_t u = 0;
      for (int64_t i = 0; i < nty; ++i)
        for (int64_t j = 0; j < ntx; ++j) pc.tap_of[u++] = ay.k[i] * g.kw + ax.k[j];
      const PhaseGather as{&g, dyg, d.cog, g.c_out, hp, wp, ay.q, ax.q, ntx};
      const WeightGather bs{wg, d.cog, d.taps, d.depth, pc.tap_of};
      const GemmPackSource a_src{&pack_phase, &as}, b_src{&pack_weight, &bs};
      gemm_f32_src(true, false, rows, d.cig, nty * ntx * d.cog, 1.0f, nullptr, 0, &a_src,
                   nullptr, 0, &b_src, 0.0f, pc.block, d.cig, nullptr, Activation::none);
    }
    const float* src = pc.block;
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
    image_gemm(as, bs, m, d.cog, d.depth, yg, g.c_out, bg, act);
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
    float* tmp = carve_workspace([&](Carver& c) { return permute_row(c, g, d); });
    if (beta_w != 0.0f) permute_weight_rows(dwg, tmp, d.cog, d.cig, d.taps, true);
    gemm_f32_src(true, false, d.cog, d.depth, m, 1.0f, dyg, g.c_out, nullptr, nullptr, 0, &b_src,
                 beta_w, dwg, d.depth, nullptr, Activation::none);
    permute_weight_rows(dwg, tmp, d.cog, d.cig, d.taps, false);
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
    // (t * cog + co, ci) = w[co, ci, taps[t]], in the transposed gather's tap order (tap_of)
    const WeightGather bs{wg, d.cog, d.taps, d.depth, nullptr, g.kw};
    image_gemm(as, bs, mi, d.cig, d.taps * d.cog, dxg, g.c_in, nullptr, Activation::none);
  }
}

GemmScratch conv2d_scratch(const ConvGeometry& g, bool input_grad, int64_t threads) {
  // The same (trans_a, m, n, k, lda) as the GEMM calls above (every group has the same
  // shapes; a gathered A is sized as a transposed one, see GemmPackSource).
  const GroupDims d = group_dims(g);
  const int64_t m = g.out_pixels(), mi = g.in_pixels();
  GemmScratch s;
  s.add_driver(workspace_bytes([&](Carver& c) { return permute_row(c, g, d); }));
  if (conv2d_is_pointwise(g)) {
    s.add(gemm_workspace(false, m, d.cog, d.cig, g.c_in, threads));
    s.add(gemm_workspace(true, d.cog, d.cig, m, g.c_out, threads));
    if (input_grad) s.add(gemm_workspace(false, mi, d.cig, d.cog, g.c_out, threads));
    return s;
  }
  // The sources the drivers above gather from (their pointers do not matter here).
  const ImageGather fwd{&g, nullptr, d.cig, g.c_in, false}, bwd{&g, nullptr, d.cog, g.c_out, true};
  s.add(image_gemm_workspace(fwd, m, d.cog, d.depth, threads));
  s.add(gemm_workspace(true, d.cog, d.depth, m, g.c_out, threads));
  if (!input_grad) return s;
  if (g.sh == 1 && g.sw == 1) {
    s.add(image_gemm_workspace(bwd, mi, d.cig, d.taps * d.cog, threads));
    return s;
  }
  for_each_phase(g, PhaseTaps{}, [&](int64_t, int64_t, const PhaseAxis& ay, const PhaseAxis& ax) {
    s.add(gemm_workspace(true, g.n * ay.pixels * ax.pixels, d.cig, ay.n * ax.n * d.cog, 0,
                         threads));
  });
  s.add_driver(workspace_bytes([&](Carver& c) { return phase_pieces(c, g, d); }));
  return s;
}

}  // namespace sg
