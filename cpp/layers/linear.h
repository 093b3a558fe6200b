// Linear layer (y = x w^T + b) forward and backward. Shape legend: x is (batch, in),
// w is (out, in), b is (out,), y and dy are (batch, out). The matrix products go to
// sg::gemm_f32; the per-ISA part here is the bias-gradient column sum.
#pragma once
#include <cstdint>

#include "gemm/gemm.h"
#include "gemm/gemm_scratch.h"
#include "isa/dispatch_table.h"

namespace sg {

struct LinearKernels {
  // db[j] = (beta ? db[j] : 0) + sum_i dy[i, j]; beta is 0 (write, db never read) or 1.
  // Deterministic for any thread count and ISA (see colreduce_impl.h).
  void (*colsum)(float* db, const float* dy, int64_t batch, int64_t out, float beta);
};

SG_DECLARE_DISPATCH(LinearKernels, linear_kernels, linear_kernels);

// y = act(x w^T + b): one GEMM with the bias (may be null) and activation in its epilogue.
void linear_forward_f32(float* y, const float* x, const float* w, const float* b, int64_t batch,
                        int64_t in, int64_t out, Activation act);

// dx = dy w (skipped when dx is null), dw = beta_w*dw + dy^T x, db = beta_b*db + colsum(dy)
// (skipped when db is null). Each beta is 0 (first backward after zero_grad: write without
// reading) or 1 (accumulate). dx is written last, so it may be x itself (in place).
void linear_backward_f32(float* dx, float* dw, float* db, const float* dy, const float* x,
                         const float* w, int64_t batch, int64_t in, int64_t out, float beta_w,
                         float beta_b);

// The GEMM scratch a forward plus backward at this shape grows on `threads` threads (dx's GEMM
// only when input_grad): the calls of the two functions above, in one place.
GemmScratch linear_scratch(int64_t batch, int64_t in, int64_t out, bool input_grad,
                           int64_t threads);

}  // namespace sg
