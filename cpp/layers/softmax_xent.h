// Softmax cross-entropy on logits, torch's cross_entropy: class-index targets (with class
// weights, ignore_index and label smoothing) or probability targets; the loss and its gradient
// in one pass per row. Shape legend: logits, dlogits and soft targets are (batch, classes),
// labels are (batch,), class_weight is (classes,).
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

// Row i's loss, with p = softmax(x_i), eps = label_smoothing, w = class_weight (1 if null):
//   labels:  (1-eps) w[y] (-log p[y]) + eps/C sum_c w[c] (-log p[c]); 0 if y == ignore_index
//   soft t:  sum_c w[c] q[c] (-log p[c]) with q = (1-eps) t + eps/C (ignore_index unused)
// The kernel returns the SUM of the row losses (rows in order, double); row_loss, if non-null,
// receives each one. dlogits, if non-null, receives grad_scale * d row loss / d logits (zero rows
// for ignored labels) and may alias logits. Labels must lie in [0, classes) or equal
// ignore_index (checked by the caller).
struct XentArgs {
  float* dlogits;
  float* row_loss;
  const float* logits;
  const float* class_weight;
  const float* soft_target;  // the soft kernel's targets; unused by the label kernels
  int64_t batch, classes, ignore_index;
  float label_smoothing, grad_scale;
};

struct SoftmaxXentKernels {
  double (*i64)(const XentArgs& a, const int64_t* labels);
  double (*i32)(const XentArgs& a, const int32_t* labels);
  double (*soft)(const XentArgs& a);
};

SG_DECLARE_DISPATCH(SoftmaxXentKernels, softmax_xent_kernels, softmax_xent_kernels);

}  // namespace sg
