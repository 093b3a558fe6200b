// Softmax and log-softmax along one dimension, forward and backward, per ISA. A C-contiguous
// tensor is viewed as (outer, D, inner) around that dimension: element (o, d, i) lies at
// (o * D + d) * inner + i. inner == 1 (the last dimension) runs along contiguous rows;
// otherwise the SIMD lanes run over inner (consecutive rows of the strided dimension side by
// side), so no transpose is made. Each row's sums have a fixed order: results do not depend
// on the thread count.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

struct SoftmaxKernels {
  // y = softmax(x) or, when log, log_softmax(x), max-subtracted. y may alias x. At x = +inf
  // the row's +inf entries share the mass (the limit); a row of -inf (0/0) or with NaN is NaN.
  void (*forward)(float* y, const float* x, int64_t outer, int64_t D, int64_t inner, bool log);
  // dL/dx from dL/dy and the forward's output y: softmax y * (dy - sum(dy * y)); log_softmax
  // dy - exp(y) * sum(dy). dx may alias dy.
  void (*backward)(float* dx, const float* dy, const float* y, int64_t outer, int64_t D,
                   int64_t inner, bool log);
};

SG_DECLARE_DISPATCH(SoftmaxKernels, softmax_kernels, softmax_kernels);

}  // namespace sg
