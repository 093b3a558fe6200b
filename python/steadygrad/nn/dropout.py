"""Dropout(p): zeroes each element with probability p in training and scales the rest by
1/(1-p); identity in eval. The mask is a counter-based hash of (seed, index) computed in C++,
so nothing but the seed (drawn from sg.manual_seed's generator) is stored for the backward."""

from __future__ import annotations

import numpy as np

from steadygrad import _core
from steadygrad import random as _random
from steadygrad.nn._util import real_arg, shape_of, work_like
from steadygrad.nn.module import Module


class Dropout(Module):
    """torch.nn.Dropout(p=0.5): in training mode, zeroes each element with probability p and
    scales the others by 1/(1-p) (p=1 zeroes everything); in eval mode, or with p=0, the
    identity. Input: float32 of any shape.

    The mask is a hash of a seed drawn from sg's generator for each training forward, so
    `sg.manual_seed` makes it reproducible and the backward recomputes it instead of storing
    it; it is the same for any thread count or ISA path, but not torch's mask."""

    # Elementwise on any shape: runs on channels-last data inside a conv run (nn._layout); its
    # mask is drawn over the elements in memory order, so it depends on the layout it runs in.
    layout_agnostic = True

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        p = real_arg("Dropout", "p", p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)
        self._seed: int | None = None
        self._shape: tuple[int, ...] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"input must be a numpy.ndarray of float32, got {type(x).__name__}")
        if not self.training or self.p == 0.0:
            if x.dtype != np.float32:
                raise TypeError(f"input must have dtype float32, got {x.dtype} array of shape {x.shape}")
            self._seed, self._shape = None, x.shape
            return x
        if not (x.dtype == np.float32 and x.flags.c_contiguous and x.ctypes.data % 4 == 0):
            # the binding names what is wrong; the seed is drawn only for an input it takes
            _core.dropout(x, self.p, 0, out=None)
        seed = _random.draw_seed()
        y = _core.dropout(x, self.p, seed, out=work_like(self, "out", shape_of(x), x))
        self._seed, self._shape = seed, x.shape
        return y

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        if not isinstance(grad_output, np.ndarray) or grad_output.shape != self._shape:
            got = getattr(grad_output, "shape", type(grad_output).__name__)
            raise ValueError(f"grad_output must have the output's shape {self._shape}, got {got}")
        if self._seed is None:
            return grad_output
        dx = work_like(self, "dx", self._shape, grad_output)
        return _core.dropout(grad_output, self.p, self._seed, out=dx)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        n = 4 * int(np.prod(shape))
        return n, n

    def extra_repr(self) -> str:
        return f"p={self.p}"
