"""Low-level kernels (`sg.ops`): float32 numpy in, float32 numpy out, one C++ call each.

Every function validates its arguments (dtype, rank, shape, contiguity, writeability,
aliasing) and raises TypeError/ValueError naming the argument; the GIL is released while the
kernel runs.
"""

from __future__ import annotations

from steadygrad._core import (
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    gemm,
    global_norm,
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softmax,
    softmax_backward,
    softmax_cross_entropy,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)

__all__ = [
    "elu",
    "elu_backward",
    "gelu",
    "gelu_backward",
    "gemm",
    "global_norm",
    "leaky_relu",
    "leaky_relu_backward",
    "log_softmax",
    "log_softmax_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "softmax",
    "softmax_backward",
    "softmax_cross_entropy",
    "softplus",
    "softplus_backward",
    "tanh",
    "tanh_backward",
]
