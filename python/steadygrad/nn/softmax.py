"""Softmax and LogSoftmax along a dimension (torch.nn.Softmax / LogSoftmax). Forward and
backward are one C++ call each (cpp/layers/softmax.h): max-subtracted, along any dimension
(a dimension other than the last runs strided in the kernel, no transposed copy), and the
backward works from the forward's output: softmax dx = y * (g - sum(g * y)), log_softmax
dx = g - exp(y) * sum(g)."""

from __future__ import annotations

from typing import Any

import numpy as np

from steadygrad import _core
from steadygrad.nn._util import int_arg
from steadygrad.nn.activation import _Activation


def check_dim(dim: int, ndim: int) -> int:
    """dim as a non-negative axis of an ndim-d input, or torch's IndexError (a 0-d input has
    the range of a 1-d one)."""
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not lo <= dim <= hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], "
                         f"but got {dim})")
    return dim % max(ndim, 1)


class _Softmax(_Activation):
    # Works along one axis: not elementwise, so a channels-last run converts before it.
    layout_agnostic = False
    _saves_output = True
    reads_output_in_backward = True

    _forward_kernel: staticmethod[..., np.ndarray]
    _backward_kernel: staticmethod[..., np.ndarray]

    def __init__(self, dim: int | None = -1) -> None:
        super().__init__()
        name = type(self).__name__
        if dim is None:
            raise TypeError(
                f"{name}: dim=None (torch's deprecated implicit choice of dimension) is not "
                f"supported; pass the dimension to normalize over, e.g. {name}(dim=-1) for the "
                f"last one or {name}(dim=1) for the classes of an (N, C, ...) input")
        self.dim = int_arg(name, "dim", dim)

    def _fwd(self, x: Any, out: np.ndarray | None) -> np.ndarray:
        return self._forward_kernel(x, self.dim, out=out)

    def _bwd(self, dy: np.ndarray, saved: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        return self._backward_kernel(dy, saved, self.dim, out=out)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        check_dim(self.dim, len(shape))
        return tuple(shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_Softmax):
    """exp(x) / sum(exp(x)) along `dim` (default the last; torch's dim=None is refused)."""

    _forward_kernel = staticmethod(_core.softmax)
    _backward_kernel = staticmethod(_core.softmax_backward)


class LogSoftmax(_Softmax):
    """x - log(sum(exp(x))) along `dim` (default the last; torch's dim=None is refused)."""

    _forward_kernel = staticmethod(_core.log_softmax)
    _backward_kernel = staticmethod(_core.log_softmax_backward)
