"""LayerNorm over the trailing dimensions with torch.nn.LayerNorm's semantics: each sample's
last len(normalized_shape) dimensions normalised by their own mean and biased variance, then
an elementwise affine (weight ones, bias zeros, both shaped normalized_shape). Forward and
backward are one C++ call each (cpp/layers/layernorm.h) on the (rows, features) view of the
input: the forward saves each row's mean and rstd, the backward computes dL/dx per row and
the parameter gradients as deterministic column sums."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from steadygrad import _core
from steadygrad.nn._util import grad_input_out, real_arg, work_like
from steadygrad.nn.module import Module
from steadygrad.nn.parameter import Parameter


def _normalized_shape(value: object) -> tuple[int, ...]:
    """normalized_shape as torch takes it (an int or a sequence of ints), each >= 1: a
    TypeError for anything but ints, a ValueError for an empty shape or a size below 1."""
    dims = [value] if isinstance(value, (int, np.integer)) else value
    items = list(dims) if isinstance(dims, Iterable) and not isinstance(dims, (str, bytes)) else None
    if items is None or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                for v in items):
        raise TypeError(f"LayerNorm: normalized_shape must be an int or a sequence of ints, "
                        f"got {value!r}")
    if not items or min(items) < 1:
        raise ValueError(f"LayerNorm: normalized_shape must be positive sizes (at least one), "
                         f"got {value!r}")
    return tuple(int(v) for v in items)


def _flat(p: Parameter | None, attr: str) -> np.ndarray | None:
    """A parameter's data or gradient buffer as the (features,) vector the kernels take (a view:
    both are contiguous in the model's flat storage)."""
    if p is None:
        return None
    a: np.ndarray = getattr(p, attr)
    return a.reshape(-1)


class LayerNorm(Module):
    """torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
    input (*, *normalized_shape), any leading shape."""

    # What a Sequential's plan may ask of it (nn.plan): dL/dx left out or written over the
    # input (the backward reads every row whole before it stores that row's dL/dx), an output
    # of its own that its backward never reads.
    grad_into_input = True
    skips_grad_input = True
    owns_output = True
    reads_output_in_backward = False
    # the pending backward's input, its (rows, features) view and the saved row statistics
    # (Module.__getstate__)
    _transient = ("_x", "_rows", "_stats")

    def __init__(self, normalized_shape: int | Iterable[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        shape = _normalized_shape(normalized_shape)
        eps = real_arg("LayerNorm", "eps", eps)
        if not eps >= 0.0:
            raise ValueError(f"LayerNorm: eps must be >= 0, got {eps}")
        self.normalized_shape, self.eps = shape, eps
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(shape, np.float32))
        else:
            self.register_parameter("weight", None)
        if self.elementwise_affine and bias:
            self.bias = Parameter(np.zeros(shape, np.float32))
        else:
            self.register_parameter("bias", None)
        self._flatten_parameters()
        self._x: np.ndarray | None = None  # the forward's input, as it came
        self._rows: np.ndarray | None = None  # its (rows, features) view
        self._stats: tuple[np.ndarray, np.ndarray] | None = None  # per-row mean, rstd

    @property
    def _features(self) -> int:
        return int(np.prod(self.normalized_shape))

    def reset_parameters(self) -> None:
        if self.weight is not None:
            self.weight.data[...] = 1.0
        if self.bias is not None:
            self.bias.data[...] = 0.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        rows = self._rows_of(x)
        w, b = self.weight, self.bias
        n = 0 if rows is None else rows.shape[0]
        mean, rstd = self._buffer("save_mean", (n,)), self._buffer("save_rstd", (n,))
        out = None if rows is None else work_like(self, "out", rows.shape, x)
        y = _core.layernorm_forward(x if rows is None else rows, _flat(w, "data"),
                                    _flat(b, "data"), mean, rstd, eps=self.eps, out=out)
        d = self.__dict__  # not parameters or buffers: skips Module.__setattr__
        d["_x"], d["_rows"], d["_stats"] = x, rows, (mean, rstd)
        return y.reshape(x.shape)

    def _rows_of(self, x: object) -> np.ndarray | None:
        """x as its (rows, features) matrix after checking its trailing shape; None when it is
        not a float32 array (the binding names what is wrong)."""
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            return None
        self.output_shape(x.shape)
        rows: np.ndarray = x.reshape(-1, self._features)
        return rows

    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True,
                  donate_input: bool = False) -> np.ndarray | None:
        x, rows, stats = self._x, self._rows, self._stats
        assert x is not None and rows is not None and stats is not None
        if not isinstance(grad_output, np.ndarray) or grad_output.shape != x.shape:
            got = getattr(grad_output, "shape", type(grad_output).__name__)
            raise ValueError(f"grad_output must have the output's shape {x.shape}, got {got}")
        w, b = self.weight, self.bias
        # may be x: each row is read whole before its dL/dx is stored
        dx = grad_input_out(self, x, grad_output, input_grad, donate_input)
        grad_input = _core.layernorm_backward(
            grad_output.reshape(rows.shape), rows, _flat(w, "data"), *stats,
            _flat(w, "grad_buffer"), _flat(b, "grad_buffer"),
            accumulate=w is not None and w.grad_fresh,
            accumulate_bias=b is not None and b.grad_fresh, compute_grad_input=input_grad,
            grad_input=None if dx is None else dx.reshape(rows.shape))
        if w is not None:
            w.mark_grad_fresh()
        if b is not None:
            b.mark_grad_fresh()
        return None if grad_input is None else grad_input.reshape(x.shape)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        shape, ns = tuple(shape), self.normalized_shape
        if shape[len(shape) - len(ns):] != ns or len(shape) < len(ns):
            raise ValueError(f"Given normalized_shape={list(ns)}, expected input with shape "
                             f"[*, {', '.join(map(str, ns))}], but got input of size{list(shape)}")
        return shape

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        # the output and each row's mean and rstd; dL/dx
        n = 4 * int(np.prod(shape))
        return n + 8 * (int(np.prod(shape)) // self._features), n

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")
