// The geometry of one convolution or pooling call over a channels-last batch: input
// (n, h, w, c_in), output (n, oh, ow, c_out), a (kh, kw) window with strides, dilations and
// padding (before/after, which differ for torch's padding='same' with an even window).
// 1-d layers use h = oh = kh = 1, sh = dh = 1, ph0 = ph1 = 0. Shared by the conv, depthwise
// and pooling families; the binding (ConvGeometry in Python) validates it once.
#pragma once
#include <cstdint>

namespace sg {

struct ConvGeometry {
  int64_t n = 0, h = 0, w = 0, c_in = 0, c_out = 0, groups = 1;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t ph0 = 0, ph1 = 0, pw0 = 0, pw1 = 0;  // padding before / after, rows and columns
  int64_t oh = 0, ow = 0;                      // output size (set by conv_output_size)

  int64_t in_pixels() const { return n * h * w; }
  int64_t out_pixels() const { return n * oh * ow; }
  // The GEMM depth of one group: (c_in / groups) * kh * kw, in torch's weight order
  // (c_in_g, kh, kw) so that a (c_out, c_in_g, kh, kw) weight is the GEMM's B^T as it is.
  int64_t k_per_group() const { return c_in / groups * kh * kw; }
};

// torch's output extent of one spatial dimension: floor or (ceil_mode) ceil of
// (in + pad0 + pad1 - dil * (k - 1) - 1) / stride + 1, where ceil_mode drops a last window
// that would start in the trailing padding (torch's pooling rule). Can be < 1: the caller
// rejects that.
inline int64_t conv_output_size(int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t pad0,
                                int64_t pad1, bool ceil_mode) {
  const int64_t span = in + pad0 + pad1 - dil * (k - 1) - 1;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad0) --out;
  return out;
}

}  // namespace sg
