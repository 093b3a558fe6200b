"""Low-level kernels (`sg.ops`): float32 numpy in, float32 numpy out, one C++ call each.

Every function validates its arguments (dtype, rank, shape, contiguity, writeability,
aliasing) and raises TypeError/ValueError naming the argument; the GIL is released while the
kernel runs.
"""

from __future__ import annotations

from steadygrad._core import (
    gelu,
    gelu_backward,
    gemm,
    global_norm,
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax_cross_entropy,
    tanh,
    tanh_backward,
)

__all__ = [
    "gelu",
    "gelu_backward",
    "gemm",
    "global_norm",
    "leaky_relu",
    "leaky_relu_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax_cross_entropy",
    "tanh",
    "tanh_backward",
]
