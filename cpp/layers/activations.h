// Elementwise activations, forward and backward, per ISA. Shape legend: n elements, flat.
// Backward works from what forward cached: x for relu/leaky_relu/gelu, y for tanh/sigmoid.
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

struct ActivationKernels {
  // y = f(x) (none: a copy). param: negative_slope for leaky_relu, unused otherwise. y may
  // alias x.
  void (*forward)(Activation act, float* y, const float* x, int64_t n, float param);
  // dx = dy * f'(.) where `saved` is x or y (act_backward_uses_output). dx may alias dy.
  void (*backward)(Activation act, float* dx, const float* dy, const float* saved, int64_t n,
                   float param);
};

SG_DECLARE_DISPATCH(ActivationKernels, activation_kernels, activation_kernels);

}  // namespace sg
