// Elementwise losses (MSE, L1, SmoothL1, Huber, BCE, BCE with logits): the per-element loss,
// its gradient and the deterministic sum in one pass. Shape legend: n elements, flat; weight
// and pos_weight are already broadcast to n elements by the caller (or null).
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

enum class ElemLoss : int { kMse, kL1, kSmoothL1, kHuber, kBce, kBceLogits };

struct ElemLossArgs {
  ElemLoss kind;
  float param;             // SmoothL1's beta (> 0), Huber's delta (> 0); unused otherwise
  const float* input;      // predictions, probabilities (BCE) or logits (BCE with logits)
  const float* target;
  const float* weight;     // per-element weight or null (1)
  const float* pos_weight; // BCE with logits: per-element positive weight or null (1)
  float* grad;             // null: no gradient; else grad_scale * d loss_i / d input_i
  float* loss_out;         // null, or the per-element (weighted) losses (reduction 'none')
  float grad_scale;
};

struct ElemLossKernels {
  // One chunk [begin, begin + n) (n <= kReduceChunk): writes grad / loss_out there and adds
  // loss_i to lanes[(i - begin) % 16] in double.
  void (*chunk)(const ElemLossArgs& a, int64_t begin, int64_t n, double* lanes);
};

SG_DECLARE_DISPATCH(ElemLossKernels, elem_loss_kernels, elem_loss_kernels);

// Returns sum_i loss_i (double, bitwise the same for any thread count).
double elem_loss_f32(const ElemLossArgs& a, int64_t n);

}  // namespace sg
