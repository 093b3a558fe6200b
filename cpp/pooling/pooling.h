// Pooling over channels-last batches (x (n, h, w, c), y (n, oh, ow, c)) with torch's numerics:
// max pooling (padding is -inf, the first maximum in the window's row-major order wins, a NaN
// in the window is the maximum: the last NaN, as torch's kernels keep it), average pooling
// (torch's divisor rules, ceil_mode windows clipped at the padded edge) and adaptive average
// pooling (windows floor(i*in/out) .. ceil((i+1)*in/out)). 1-d pooling is h = oh = 1.
//
// The driver (pooling.cpp) describes each spatial axis by a PoolAxis table; the per-ISA
// kernels run over a range of flat rows (image * out_rows + out_row for the forwards,
// image * h + input_row for the backwards), each row written by one kernel call in a fixed
// order, so results are bitwise the same for any thread count. The backwards gather: an input
// pixel sums the contributions of the outputs whose windows hold it in output row-major order
// (the order torch's scatter adds them in), so dX needs no zeroing and no atomics.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"
#include "layers/conv_geometry.h"

namespace sg {

// One spatial axis, as the kernels see it (plain pointers: a kernel file compiled with ISA
// flags must not instantiate std:: templates the baseline files share): window element k of
// output o sits at input position start[o] + k * step; the elements inside the input are k in
// [klo[o], khi[o]) (may be empty). cover_* is the transpose: input i lies in the windows of
// outputs cover_o[j] (ascending) as element cover_k[j], for j in [cover_off[i],
// cover_off[i + 1]). div[o]: this axis's factor of an average's divisor (1 for max pooling).
// Built by the driver (pooling.cpp) in the calling thread's workspace (driver_workspace.h).
struct PoolAxis {
  int64_t in = 0, out = 0, step = 1;
  const int64_t *start = nullptr, *klo = nullptr, *khi = nullptr;
  const float* div = nullptr;
  const int64_t *cover_off = nullptr, *cover_o = nullptr, *cover_k = nullptr;
};

struct PoolingKernels {
  // Rows [r0, r1) of n * oh: y = the window maximum, argmax = its window element index
  // (ki * kw + kj; -1 for a window with no element inside the input, whose y is -inf).
  void (*max_forward)(float* y, int32_t* argmax, const float* x, int64_t h, int64_t w,
                      int64_t c, const PoolAxis& rows, const PoolAxis& cols, int64_t kw,
                      int64_t r0, int64_t r1);
  // Rows [r0, r1) of n * h: dx[pixel] = sum of dy[o] over the outputs o whose argmax is it.
  void (*max_backward)(float* dx, const float* dy, const int32_t* argmax, int64_t h, int64_t w,
                       int64_t c, const PoolAxis& rows, const PoolAxis& cols, int64_t kw,
                       int64_t r0, int64_t r1);
  // Rows [r0, r1) of n * oh: y = (sum over the window's elements inside the input) / divisor,
  // divisor rows.div[oh] * cols.div[ow], or (divide_twice, torch's adaptive pooling) the sum
  // divided by rows.div[oh], then by cols.div[ow]. A window with no element inside: y = 0.
  void (*avg_forward)(float* y, const float* x, int64_t h, int64_t w, int64_t c,
                      const PoolAxis& rows, const PoolAxis& cols, bool divide_twice,
                      int64_t r0, int64_t r1);
  // Rows [r0, r1) of n * h: dx[pixel] = sum of dy[o] / divisor(o) over the windows holding it.
  void (*avg_backward)(float* dx, const float* dy, int64_t h, int64_t w, int64_t c,
                       const PoolAxis& rows, const PoolAxis& cols, bool divide_twice,
                       int64_t r0, int64_t r1);
};

SG_DECLARE_DISPATCH(PoolingKernels, pooling_kernels, pooling_kernels);

// The drivers (pooling.cpp): tables from the geometry, OpenMP over rows. geometry: c_in ==
// c_out == c, validated by the binding (padding at most half the dilated window, as torch).
void max_pool_forward(const ConvGeometry& g, const float* x, float* y, int32_t* argmax);
void max_pool_backward(const ConvGeometry& g, const float* dy, const int32_t* argmax, float* dx);
// divisor_override 0: none (torch rejects 0). Padding after the input is g.ph1 / g.pw1 (torch's pad).
void avg_pool_forward(const ConvGeometry& g, bool count_include_pad, int64_t divisor_override,
                      const float* x, float* y);
void avg_pool_backward(const ConvGeometry& g, bool count_include_pad, int64_t divisor_override,
                       const float* dy, float* dx);
// Adaptive: x (n, h, w, c) -> y (n, oh, ow, c), any sizes >= 1.
void adaptive_avg_pool_forward(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh,
                               int64_t ow, const float* x, float* y);
void adaptive_avg_pool_backward(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh,
                                int64_t ow, const float* dy, float* dx);

// The driver workspace (common/driver_workspace.h) one call of max or average pooling with
// this geometry carves (its window tables), and one of adaptive pooling between (h, w) and
// (oh, ow): both directions the same.
int64_t pool_scratch_bytes(const ConvGeometry& g);
int64_t adaptive_pool_scratch_bytes(int64_t h, int64_t w, int64_t oh, int64_t ow);

}  // namespace sg
