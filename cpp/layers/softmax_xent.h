// Softmax cross-entropy on logits with integer labels: the loss and its gradient in one pass
// per row. Shape legend: logits and dlogits are (batch, classes), labels are (batch,).
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

// Returns the SUM over rows of -sum_j q_j log softmax(x)_j, with q = (1-eps) onehot + eps/C.
// If dlogits is non-null it receives grad_scale * (softmax(x) - q) (e.g. 1/batch for 'mean').
// dlogits may alias logits. Labels must lie in [0, classes) (checked by the caller).
struct SoftmaxXentKernels {
  double (*i64)(float* dlogits, const float* logits, const int64_t* labels, int64_t batch,
                int64_t classes, float label_smoothing, float grad_scale);
  double (*i32)(float* dlogits, const float* logits, const int32_t* labels, int64_t batch,
                int64_t classes, float label_smoothing, float grad_scale);
};

SG_DECLARE_DISPATCH(SoftmaxXentKernels, softmax_xent_kernels, softmax_xent_kernels);

}  // namespace sg
