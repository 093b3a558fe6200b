// Elementwise activations, forward and backward, per ISA. Shape legend: n elements, flat.
// Backward works from what forward cached: y for tanh/sigmoid, x for the others.
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "isa/dispatch_table.h"

namespace sg {

// The name cpp/bindings/bind_ops.cpp still uses; drop it once that file says Activation.
using Act = Activation;

// Which tensor each activation's backward needs: true -> y (the output), false -> x (the input).
inline bool act_backward_uses_output(Activation a) {
  return a == Activation::tanh || a == Activation::sigmoid;
}

// An activation's scalar parameters: a = negative_slope (leaky_relu), alpha (elu) or beta
// (softplus); b = threshold (softplus). Unused ones are ignored.
struct ActParam {
  float a = 0.f;
  float b = 0.f;
};

struct ActivationKernels {
  // y = f(x) (none: a copy). y may alias x.
  void (*forward)(Activation act, float* y, const float* x, int64_t n, ActParam param);
  // dx = dy * f'(.) where `saved` is x or y (act_backward_uses_output). dx may alias dy.
  void (*backward)(Activation act, float* dx, const float* dy, const float* saved, int64_t n,
                   ActParam param);
};

SG_DECLARE_DISPATCH(ActivationKernels, activation_kernels, activation_kernels);

}  // namespace sg
