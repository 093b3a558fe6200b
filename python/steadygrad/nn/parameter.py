"""Parameters and the flat buffers that hold them.

Every Parameter's `.data` and `.grad` are numpy views into two contiguous float32 arrays (a
`FlatStorage`), each view starting on a 64-byte boundary. `flatten()` moves a list of
parameters into one new storage (copying values, rebinding views), which is what a model does
when it is built, so an optimizer step, a norm or a checkpoint is one pass over one array.
Each move bumps the old storage's `generation`, so whoever keeps offsets into a storage (an
optimizer's state buffers) sees in O(1) that its parameters moved and follows them.

Gradient freshness: after `zero_grad()` a parameter's gradient is *stale* (`grad` reads as
None, as in PyTorch's `zero_grad(set_to_none=True)`), and no memory is cleared. The first
backward then writes the gradient (beta = 0) and marks it fresh; later backwards accumulate.
A custom layer's backward does the same with `p.accumulate_grad(g)`; `p.grad = g` replaces the
gradient (as in PyTorch: the next backward accumulates into g) and `p.grad = None` marks it stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

ALIGN_FLOATS = 16  # 64 bytes


def aligned_zeros(n: int) -> np.ndarray:
    """A 1-D zeroed float32 array of n elements whose data starts on a 64-byte boundary.
    np.zeros is calloc: pages nothing writes (e.g. a gradient buffer before the first backward)
    are never made resident."""
    raw = np.zeros(n + ALIGN_FLOATS, dtype=np.float32)
    shift = (-(raw.ctypes.data // 4)) % ALIGN_FLOATS
    return raw[shift : shift + n]


def _round_up(n: int) -> int:
    return (n + ALIGN_FLOATS - 1) // ALIGN_FLOATS * ALIGN_FLOATS


class FlatStorage:
    """One contiguous float32 buffer of values and one of gradients for a list of parameters.

    `data` and `grad` are 1-D, 64-byte aligned; parameter i occupies
    `[offsets[i], offsets[i] + sizes[i])` of both; the padding between parameters is zero.
    The layout never changes; `generation` counts the times `flatten()` moved parameters out
    of this storage (`params` still lists them: `p.storage is s` says where p lives now).
    """

    def __init__(self, params: list[Parameter]) -> None:
        self.params = list(params)
        self.offsets: list[int] = []
        self.sizes: list[int] = []
        total = 0
        for p in self.params:
            self.offsets.append(total)
            self.sizes.append(p.size)
            total += _round_up(p.size)
        self.data = aligned_zeros(total)
        self.grad = aligned_zeros(total)
        self.generation = 0

    @property
    def numel(self) -> int:
        """The number of elements of the flat buffer (padding for alignment included)."""
        return int(self.data.size)

    def index(self, param: Parameter) -> int:
        """The position of `param` among the storage's parameters (ValueError if not one)."""
        for i, p in enumerate(self.params):
            if p is param:
                return i
        raise ValueError("parameter does not belong to this storage")


class Parameter:
    """A trainable float32 tensor: `.data` and `.grad` are views into its FlatStorage."""

    __slots__ = ("__weakref__", "_data", "_grad", "_grad_fresh", "_offset", "_storage")

    def __init__(self, data: np.ndarray) -> None:
        arr = np.asarray(data)
        if arr.dtype != np.float32:
            raise TypeError(f"Parameter: data must have dtype float32, got {arr.dtype}")
        self._grad_fresh = False
        self._storage: FlatStorage | None = None
        self._offset = 0
        # flatten() copies the values into the new storage; a stale gradient is not copied
        # (the storage's is zero), so no parameter-sized temporaries are made here.
        self._data = arr
        self._grad = arr
        flatten([self])

    # -- values ------------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The float32 values: a view into the model's flat parameter buffer. Assigning copies
        into the existing view (never replaces it: the flat buffer stays whole); the shape
        must match."""
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        value = np.asarray(value)
        if value.shape != self._data.shape:
            raise ValueError(
                f"Parameter.data: expected shape {self._data.shape}, got {value.shape}"
            )
        np.copyto(self._data, value, casting="same_kind")

    @property
    def grad(self) -> np.ndarray | None:
        """The gradient view, or None while stale (after zero_grad, before any backward)."""
        return self._grad if self._grad_fresh else None

    @grad.setter
    def grad(self, value: Any) -> None:
        """As in PyTorch: `p.grad = g` replaces the gradient (a copy of g into the flat buffer;
        the next backward accumulates into it), `p.grad = None` marks it stale. A layer's
        backward adds its contribution with `accumulate_grad(g)` instead."""
        if value is None:
            self._grad_fresh = False
            return
        np.copyto(self._grad, self._checked_grad(value, "grad"), casting="same_kind")
        self._grad_fresh = True

    def accumulate_grad(self, grad: Any) -> None:
        """Add `grad` to the gradient, or write it when the gradient is stale (after zero_grad):
        what a built-in layer's backward does, for custom layers (`p.grad += g` fails after
        zero_grad, since grad reads None, and `p.grad = g` drops what was accumulated)."""
        g = self._checked_grad(grad, "accumulate_grad")
        if self._grad_fresh:
            np.add(self._grad, g, out=self._grad, casting="same_kind")
        else:
            np.copyto(self._grad, g, casting="same_kind")
            self._grad_fresh = True

    def _checked_grad(self, value: Any, what: str) -> np.ndarray:
        """`value` as an array after checking it can stand for this gradient (nothing written)."""
        arr = np.asarray(value)
        if arr.dtype.kind != "f":
            raise TypeError(f"Parameter.{what}: expected a floating-point array (the gradient is "
                            f"stored as float32), got dtype {arr.dtype}")
        if arr.shape != self._grad.shape:
            raise ValueError(f"Parameter.{what}: expected shape {self._grad.shape} (the "
                             f"parameter's), got {arr.shape}")
        return arr

    @property
    def grad_buffer(self) -> np.ndarray:
        """The gradient view regardless of freshness (for kernels that write it)."""
        return self._grad

    @property
    def grad_fresh(self) -> bool:
        """Whether the gradient holds a value since the last zero_grad (else `grad` reads None
        and the next backward writes instead of adding)."""
        return self._grad_fresh

    def mark_grad_fresh(self) -> None:
        """Declare `grad_buffer` written (by a kernel that wrote it directly)."""
        self._grad_fresh = True

    def zero_grad(self) -> None:
        """Mark the gradient stale: `grad` reads None, the next backward writes it. No memset."""
        self._grad_fresh = False

    # -- metadata ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of `data`."""
        return self._data.shape

    @property
    def size(self) -> int:
        """The number of elements (numpy's `size`)."""
        return int(self._data.size)

    def numel(self) -> int:
        """The number of elements (torch's `numel()`)."""
        return int(self._data.size)

    @property
    def storage(self) -> FlatStorage:
        """The FlatStorage whose buffers hold this parameter's values and gradient."""
        assert self._storage is not None
        return self._storage

    @property
    def offset(self) -> int:
        """Element offset of this parameter inside `storage.data` / `storage.grad`."""
        return self._offset

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape})"


def flatten(params: Iterable[Parameter]) -> FlatStorage:
    """Move `params` (deduplicated, order kept) into one new FlatStorage; returns it.

    Values and fresh gradients are copied (a stale one reads None either way); each parameter's
    `.data` and `.grad` become views into the new buffers, and each storage a parameter left
    gets its `generation` bumped (an optimizer over these parameters re-binds at its next
    step, its state carried along). Anything else still holding an old view keeps the old
    memory: take `p.data` / `p.grad` again after building a model.
    """
    unique: list[Parameter] = []
    seen: set[int] = set()
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    storage = FlatStorage(unique)
    for p, off in zip(unique, storage.offsets, strict=True):
        n = p.size
        shape = p._data.shape
        new_data = storage.data[off : off + n].reshape(shape)
        new_grad = storage.grad[off : off + n].reshape(shape)
        new_data[...] = p._data
        if p._grad_fresh:  # a stale gradient is never read: the new (zero) buffer stands in
            new_grad[...] = p._grad
        p._data, p._grad = new_data, new_grad
        if p._storage is not None:
            p._storage.generation += 1
        p._storage, p._offset = storage, off
    return storage


def shared_storage(params: Iterable[Parameter]) -> FlatStorage | None:
    """The one FlatStorage holding all of `params`, or None if they span several."""
    storage = None
    for p in params:
        if storage is None:
            storage = p.storage
        elif p.storage is not storage:
            return None
    return storage
