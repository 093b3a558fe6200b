// Elementwise activations, forward and backward, per ISA. Shape legend: n elements, flat.
// Backward works from what forward cached: x for relu/leaky_relu/gelu, y for tanh/sigmoid.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

enum class Act : int { relu = 0, leaky_relu, gelu, gelu_tanh, tanh, sigmoid };

// Which tensor each activation's backward needs: true -> y (the output), false -> x (the input).
inline bool act_backward_uses_output(Act a) { return a == Act::tanh || a == Act::sigmoid; }

struct ActivationKernels {
  // y = f(x). param: negative_slope for leaky_relu, unused otherwise. y may alias x.
  void (*forward)(Act act, float* y, const float* x, int64_t n, float param);
  // dx = dy * f'(.) where `saved` is x or y (act_backward_uses_output). dx may alias dy.
  void (*backward)(Act act, float* dx, const float* dy, const float* saved, int64_t n, float param);
};

SG_DECLARE_DISPATCH(ActivationKernels, activation_kernels, activation_kernels);

}  // namespace sg
