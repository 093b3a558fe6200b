"""Linear, Identity and Flatten. Linear's forward is one GEMM with the bias fused; its
backward is one call that computes grad_input, grad_weight and grad_bias."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from steadygrad import _core
from steadygrad.nn import init
from steadygrad.nn._util import check_rows, grad_input_out, int_arg, size_arg, work_rows
from steadygrad.nn.module import Module
from steadygrad.nn.parameter import Parameter
from steadygrad.nn.plan import KernelLayer

if TYPE_CHECKING:
    from steadygrad._core import GemmScratch


class Linear(KernelLayer, Module):
    """y = x W^T + b with W of shape (out_features, in_features), as torch.nn.Linear."""

    # What a Sequential's plan may ask of it (nn.plan) besides a KernelLayer's (dW reads x
    # before dL/dx is written): a ReLU in the GEMM's epilogue.
    fusable_epilogues = frozenset({"relu"})
    # For the diagnostics (steadygrad.diagnostics.probe): `weight` (out, in) is a weight matrix;
    # its fan-in (in_features) gives the init gain check_init reports.
    weight_layer = True
    _transient = ("_x",)  # the pending backward's input (Module.__getstate__)
    bias: Parameter | None  # registered by __init__; None with bias=False

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = size_arg("in_features", in_features)
        self.out_features = size_arg("out_features", out_features)
        self.weight = Parameter(np.zeros((self.out_features, self.in_features), np.float32))
        self.register_parameter(
            "bias", Parameter(np.zeros(self.out_features, np.float32)) if bias else None)
        self.reset_parameters()
        self._flatten_parameters()
        self._x: np.ndarray | None = None

    def reset_parameters(self) -> None:
        # torch.nn.Linear's default: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)), same for bias
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: np.ndarray, *, epilogue: str = "none") -> np.ndarray:
        out = work_rows(self, x, self.out_features)
        b = self.bias
        y = _core.linear_forward(x, self.weight.data, None if b is None else b.data, out=out,
                                 activation=epilogue)
        self.__dict__["_x"] = x  # not a parameter or buffer: skips Module.__setattr__
        return y

    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True,
                  donate_input: bool = False) -> np.ndarray | None:
        w, b, x = self.weight, self.bias, self._x
        assert x is not None
        need = input_grad
        dx = grad_input_out(self, x, grad_output, input_grad, donate_input)  # x: dW reads it first
        grad_input = _core.linear_backward(
            grad_output, x, w.data, w.grad_buffer, None if b is None else b.grad_buffer,
            accumulate=w.grad_fresh, accumulate_bias=None if b is None else b.grad_fresh,
            compute_grad_input=need, grad_input=dx)
        w.mark_grad_fresh()
        if b is not None:
            b.mark_grad_fresh()
        return grad_input

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        check_rows(shape, self.in_features)
        return (shape[0], self.out_features)

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return 4 * shape[0] * self.out_features, 4 * shape[0] * self.in_features

    def thread_scratch(self, shape: tuple[int, ...], input_grad: bool = True) -> GemmScratch:
        # the GEMMs' packing buffers, as cpp/layers/linear.cpp sizes them
        return _core.linear_scratch(shape[0], self.in_features, self.out_features,
                                    input_grad=input_grad)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}" + ("" if self.bias is not None else ", bias=False")


class Identity(Module):
    """Returns its input (and the incoming gradient) unchanged."""

    layout_agnostic = True  # for a Sequential's plan (nn._layout): any layout passes through

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        return grad_output

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one (a view, no copy), as torch.nn.Flatten."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = int_arg("Flatten", "start_dim", start_dim)
        self.end_dim = int_arg("Flatten", "end_dim", end_dim)
        self._in_shape: tuple[int, ...] | None = None

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        nd = len(shape)
        s = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        e = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not (0 <= s < max(nd, 1) and s <= e < max(nd, 1)):
            raise ValueError(f"cannot flatten dims {self.start_dim}..{self.end_dim} of an input of shape {tuple(shape)}")
        if nd == 0:
            return (1,)
        return (*shape[:s], int(np.prod(shape[s:e + 1])), *shape[e + 1:])

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"input must be a numpy.ndarray, got {type(x).__name__}")
        y = x.reshape(self.output_shape(x.shape))
        self._in_shape = x.shape
        return y

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        assert self._in_shape is not None
        want = self.output_shape(self._in_shape)
        if not isinstance(grad_output, np.ndarray) or grad_output.shape != want:
            got = getattr(grad_output, "shape", type(grad_output).__name__)
            raise ValueError(f"grad_output must have the output's shape {want}, got {got}")
        return grad_output.reshape(self._in_shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
