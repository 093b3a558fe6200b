// Per-ISA optimizer update kernels over one contiguous range of the flat buffers (Adam/AdamW,
// RMSprop, SGD, Adagrad, NAdam, gradient scale+clamp). Shape legend: n elements; every pointer is already offset
// to the range start. Scalars arrive precomputed in float (see optim.cpp, computed in double).
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

// The gradient every kernel sees first: g' = clamp(g * grad_scale, -clip_value, clip_value).
// grad_scale folds the global-norm clip coefficient and the sign for `maximize`; clip_value is
// +inf when value clipping is off (the clamp is then exact identity, NaN included).
struct GradPre {
  float grad_scale;
  float clip_value;
};

enum class WeightDecay : int { none = 0, coupled = 1, decoupled = 2 };

// PyTorch's two-form at::lerp(self, end, weight): the scalars of one weight.
struct LerpArgs {
  float weight;  // self + weight * (end - self) when weight < 0.5
  float rest;    // 1 - weight: end - (end - self) * rest otherwise
  bool small;    // weight < 0.5
};

// The moment update Adam and NAdam share, in torch's order: weight decay (coupled g += wd p,
// or decoupled p *= 1 - lr wd), m.lerp_(g, 1 - beta1), v = beta2 v + (1 - beta2) g^2.
struct MomentArgs {
  WeightDecay wd_mode;
  float weight_decay;    // coupled: g += wd * p
  float decay_factor;    // decoupled: p *= 1 - lr * wd
  LerpArgs m_lerp;       // weight 1 - beta1
  float beta2, one_minus_beta2;
};

struct AdamArgs {
  GradPre pre;
  MomentArgs moments;
  float inv_bc2_sqrt;    // 1 / sqrt(1 - beta2^t)
  float eps;
  float step_size;       // lr / (1 - beta1^t)
  bool amsgrad;
};

struct RmspropArgs {
  GradPre pre;
  float weight_decay;    // 0: off
  float alpha;
  LerpArgs avg_lerp;     // weight 1 - alpha: centered grad_avg.lerp_(g, 1 - alpha), and the
                         // (1 - alpha) g^2 of square_avg
  float eps, lr, momentum;
  bool centered;
  bool use_momentum;     // momentum > 0
};

struct SgdArgs {
  GradPre pre;
  float weight_decay;    // 0: off
  float momentum;        // 0: plain SGD, buf unused
  float one_minus_dampening;
  float lr;
  bool nesterov;
  bool first;            // buffer not yet initialised: buf = g (PyTorch's clone on first use)
};

struct AdagradArgs {
  GradPre pre;
  float weight_decay;    // 0: off (g += wd * p)
  float eps;
  float clr;             // lr / (1 + (step - 1) * lr_decay)
};

struct NadamArgs {
  GradPre pre;
  MomentArgs moments;
  float bc2;             // 1 - beta2^t (v is divided by it before the sqrt, as torch)
  float eps;
  float grad_coef;       // -lr (1 - mu_t) / (1 - mu_product_t)
  float avg_coef;        // -lr mu_{t+1} / (1 - mu_product_t mu_{t+1})
};

struct OptimKernels {
  // vmax may be null unless a.amsgrad.
  void (*adam)(float* p, float* m, float* v, float* vmax, const float* g, int64_t n,
               const AdamArgs& a);
  // gavg is null unless centered; buf is null unless use_momentum.
  void (*rmsprop)(float* p, float* sq, float* gavg, float* buf, const float* g, int64_t n,
                  const RmspropArgs& a);
  // buf is null when momentum == 0.
  void (*sgd)(float* p, float* buf, const float* g, int64_t n, const SgdArgs& a);
  void (*adagrad)(float* p, float* sum, const float* g, int64_t n, const AdagradArgs& a);
  void (*nadam)(float* p, float* m, float* v, const float* g, int64_t n, const NadamArgs& a);
  // g = clamp(g * pre.grad_scale, -pre.clip_value, pre.clip_value) in place.
  void (*scale_clamp)(float* g, int64_t n, const GradPre& pre);
};

SG_DECLARE_DISPATCH(OptimKernels, optim_kernels, optim_kernels);

}  // namespace sg
