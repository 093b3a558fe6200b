// Negative log-likelihood on (batch, classes) log-probabilities with class-index labels, as
// torch's nll_loss. No arithmetic to vectorise: the gradient is zero but at the labels.
#pragma once
#include <cstdint>

namespace sg {

// Row i's loss is -w[y] x[i, y] (w = 1 if null), 0 when y == ignore_index. Returns their sum
// (rows in order, double); row_loss, if non-null, receives each; d, if non-null, receives
// grad_scale * d loss / d x (may alias x). Labels are in range (checked by the caller).
template <class Label>
double nll_f32(float* d, float* row_loss, const float* x, const Label* labels, const float* w,
               int64_t batch, int64_t classes, int64_t ignore_index, float grad_scale);

}  // namespace sg
