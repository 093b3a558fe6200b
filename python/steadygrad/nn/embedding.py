"""Embedding: a lookup table of num_embeddings rows of embedding_dim floats, as
torch.nn.Embedding. The forward is one gather (`_core.embedding_forward`), the backward one
scatter-add into the weight's gradient (`_core.embedding_backward`: each row the sum of its
indices' gradient rows in index order, bitwise the same for any thread count). Indices have no
gradient, so it computes no dL/dx: it is the first layer of the models that use it."""

from __future__ import annotations

import numpy as np

from steadygrad import _core
from steadygrad.nn import init
from steadygrad.nn._util import int_arg, size_arg, work_like
from steadygrad.nn.module import Module
from steadygrad.nn.parameter import Parameter

_INDEX_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


class Embedding(Module):
    """y = weight[indices]: int32 or int64 indices of any shape give indices.shape +
    (embedding_dim,). weight (num_embeddings, embedding_dim) starts N(0, 1), its padding_idx
    row zero; that row gets no gradient (negative padding_idx counts from the end)."""

    # What a Sequential's plan may ask of it (nn.plan): no dL/dx (there is none for indices: the
    # backward always returns None), an output of its own its backward never reads.
    skips_grad_input = True
    owns_output = True
    reads_output_in_backward = False
    # For sg.fit (steadygrad._introspect.integer_input): a model that starts with it takes
    # integer indices as x.
    integer_input = True
    _transient = ("_x", "_sort")  # the pending backward's indices, the sort's work array

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 padding_idx: int | None = None) -> None:
        super().__init__()
        num = size_arg("num_embeddings", num_embeddings, "Embedding")
        self.num_embeddings = num
        self.embedding_dim = size_arg("embedding_dim", embedding_dim, "Embedding")
        if padding_idx is not None:
            p = int_arg("Embedding", "padding_idx", padding_idx)
            if not -num <= p < num:  # torch's wording (an AssertionError there)
                raise ValueError(f"Embedding: Padding_idx must be within num_embeddings "
                                 f"(-{num} <= padding_idx < {num}), got {p}")
            padding_idx = p + num if p < 0 else p
        self.padding_idx: int | None = padding_idx
        self.weight = Parameter(np.zeros((num, self.embedding_dim), np.float32))
        self.reset_parameters()
        self._flatten_parameters()
        self._x: np.ndarray | None = None
        self._sort: np.ndarray | None = None

    def reset_parameters(self) -> None:
        # torch.nn.Embedding's: N(0, 1), then the padding row zeroed
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        # A strided view of indices is copied (torch takes any layout); anything else goes to
        # the binding as it came, which names what is wrong (a float array: TypeError).
        if isinstance(x, np.ndarray) and x.dtype in _INDEX_TYPES and not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        shape = (*x.shape, self.embedding_dim) if isinstance(x, np.ndarray) else None
        y = _core.embedding_forward(x, self.weight.data, out=work_like(self, "out", shape, x))
        self.__dict__["_x"] = x  # not a parameter or buffer: skips Module.__setattr__
        return y

    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True) -> None:
        w, x = self.weight, self._x
        assert x is not None
        _core.embedding_backward(grad_output, x, w.grad_buffer, padding_idx=self.padding_idx,
                                 accumulate=w.grad_fresh, scratch=self._sort_scratch(x.size))
        w.mark_grad_fresh()

    def _sort_scratch(self, n: int) -> np.ndarray:
        """The backward's int64 work array (2 per index), kept and only grown."""
        s = self._sort
        if s is None or s.size < 2 * n:
            s = np.empty(2 * n, np.int64)
            self.__dict__["_sort"] = s
        return s

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*shape, self.embedding_dim)

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        # the output, and the backward's sort keys (8 bytes x 2 per index); no dL/dx buffer
        n = int(np.prod(shape))
        return 4 * n * self.embedding_dim + 16 * n, 0

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
