// The one activation enum: what the elementwise activation kernels compute (activations.h) and,
// for none and relu, what a GEMM epilogue fuses (gemm.h).
#pragma once

namespace sg {

enum class Activation : int {
  none = 0, relu, leaky_relu, gelu, gelu_tanh, tanh, sigmoid, silu, elu, softplus
};

}  // namespace sg
