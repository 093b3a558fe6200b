// Conv1d/Conv2d forward and backward over channels-last arrays, on the project's GEMM without
// an im2col matrix (implicit GEMM: the GEMM's packers gather straight from the image).
// Shape legend (cpp/layers/conv_geometry.h): x and dx are (n, h, w, c_in), y and dy are
// (n, oh, ow, c_out), w and dw are torch's (c_out, c_in / groups, kh, kw), b and db (c_out,).
// Per group g (cig = c_in / groups input and cog = c_out / groups output channels, T = kh*kw
// taps): rows are pixels, the depth is (tap, channel), tap-major, so that each tap of a window
// is one contiguous run of channels in the image. A 1x1, stride-1, unpadded convolution is a
// plain GEMM on x viewed as (n*h*w, c_in). Results are bitwise identical for any thread count.
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "gemm/gemm_scratch.h"
#include "layers/conv_geometry.h"

namespace sg {

// True when the convolution is a plain GEMM over pixels (1x1 window, stride 1, no padding).
bool conv2d_is_pointwise(const ConvGeometry& g);

// y = act(conv(x, w) + b): one GEMM per group over the whole batch (rows: the n*oh*ow output
// pixels, columns: cog, depth: T*cig), bias (may be null) and act in its epilogue.
void conv2d_forward_f32(float* y, const float* x, const float* w, const float* b,
                        const ConvGeometry& g, Activation act);

// dw = beta_w*dw + dL/dw (dy^T times the gathered im2col, tap-major, permuted in place into
// torch's order),
// db = beta_b*db + the column sums of dy (skipped when db is null), then dx (skipped when null)
// = the transposed convolution as a gather GEMM per group (rows: the n*h*w input pixels,
// columns: cig, depth: T*cog, gathering dy at the output pixels whose window taps each input
// pixel, zeros elsewhere). Each beta is 0 (write without reading) or 1 (accumulate). dx is
// written last, so it may be x itself.
void conv2d_backward_f32(float* dx, float* dw, float* db, const float* dy, const float* x,
                         const float* w, const ConvGeometry& g, float beta_w, float beta_b);

// The GEMM scratch a forward plus backward grows on `threads` threads (dx's GEMM only when
// input_grad): the calls of the two functions above, in one place, and the driver workspace
// they carve (dw's permutation row, a strided dx's phase block and tap tables). Not counted:
// the small thread-local tables of the gathers (kh*kw pointers per team member).
GemmScratch conv2d_scratch(const ConvGeometry& g, bool input_grad, int64_t threads);

}  // namespace sg
