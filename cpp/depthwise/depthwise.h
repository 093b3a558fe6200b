// Depthwise 2-d convolution (groups == c_in, c_out = m * c_in, output channel co = ci * m + j
// as torch orders it) over channels-last arrays, forward and backward. 1-d is h = kh = 1.
// Shape legend (ConvGeometry g): x, dx are (n, h, w, c_in); y, dy are (n, oh, ow, c_out);
// weight, dweight are torch's (c_out, 1, kh, kw); bias, dbias are (c_out,).
//
// depthwise.cpp is the portable driver: it repacks the weight channel-contiguous as
// wk (kh, kw, c_out), widens input rows to c_out channels when m > 1, splits the work over
// threads in fixed units and combines the dW/db partials in a fixed order. The per-ISA row
// kernels below (depthwise_impl.h) do the arithmetic, vectorised over channels.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"
#include "layers/conv_geometry.h"

namespace sg {

// Row kernels; every row is c_out channels wide ("wide" rows: (pixels, c_out)). Input rows
// that fall in the zero padding are null and contribute nothing.
struct DepthwiseKernels {
  // One output row: y (ow, c_out) = act(bias + sum over taps (r, s) of
  // xrows[r][ix(ox, s)] * wk[r, s]), xrows[r] the wide input row (w, c_out) of tap row r,
  // ix(ox, s) = ox * sw - pw0 + s * dw (outside [0, w): padding). bias null = 0;
  // relu stores max(0, .) (NaN stays NaN).
  void (*forward_row)(float* y, const float* const* xrows, const float* wk, const float* bias,
                      const ConvGeometry& g, bool relu);
  // One input row of dX, still wide: t (w, c_out) = sum over the taps (r, s) and output
  // columns ox with ix(ox, s) = ix of dyrows[r][ox] * wk[r, s]; dyrows[r] is the dy row
  // (ow, c_out) that tap row r of this input row reaches (null: none). Written, not added.
  void (*input_grad_row)(float* t, const float* const* dyrows, const float* wk,
                         const ConvGeometry& g);
  // One output row's share of dW and db, added in place: pw (kh, kw, c_out) += sum over ox of
  // dy[ox] * xrows[r][ix(ox, s)] for each tap, pb (c_out) += sum over ox of dy[ox] (either
  // may be null: skipped). dy is the row (ow, c_out); xrows as in forward_row.
  void (*weight_grad_row)(float* pw, float* pb, const float* dy, const float* const* xrows,
                          const ConvGeometry& g);
};

SG_DECLARE_DISPATCH(DepthwiseKernels, depthwise_kernels, depthwise_kernels);

// Shapes as in the legend; g.groups == g.c_in and g.c_out % g.c_in == 0 (the binding checks).
// y = act(conv(x, weight) + bias); bias null = 0.
void depthwise_forward_f32(float* y, const float* x, const float* weight, const float* bias,
                           const ConvGeometry& g, bool relu);

// dx (null: skipped) = the transposed convolution of dy; dweight / dbias (null: skipped)
// written (acc_* = false) or added to (acc_* = true), reduced over every output pixel in a
// fixed order: the same bits for any thread count.
void depthwise_backward_f32(float* dx, float* dweight, float* dbias, const float* dy,
                            const float* x, const float* weight, const ConvGeometry& g,
                            bool acc_weight, bool acc_bias);

// The driver workspace (common/driver_workspace.h) a forward plus backward (dX only when
// input_grad) with this geometry carves on `threads` threads: the packed weight, the team's
// row pointers and widened rows, the dW/db partials.
int64_t depthwise_scratch_bytes(const ConvGeometry& g, bool input_grad, int64_t threads);

}  // namespace sg
