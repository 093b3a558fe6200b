"""torch's unbatched input for the convolution and pooling layers: an input of one rank less
than the batched one ((C, L) for the 1-d layers, (C, H, W) for the 2-d ones; channels-last
(L, C) / (H, W, C) inside a channels-last run) runs as a batch of one, and the output, dL/dy
and dL/dx drop the batch dimension again. Views only: no copy, the plan's buffer rules hold."""

from __future__ import annotations

from typing import Any

import numpy as np


class AcceptsUnbatched:
    """Mixin placed before the layer class; `_batched_rank` is the batched input's rank."""

    _batched_rank: int

    def _is_unbatched(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == self._batched_rank - 1

    def forward(self, x: Any, **kw: Any) -> Any:
        unbatched = isinstance(x, np.ndarray) and self._is_unbatched(x.shape)
        if not unbatched:
            out = super().forward(x, **kw)  # type: ignore[misc]
            self.__dict__["_unbatched"] = False  # after the forward: an error leaves it as it was
            return out
        try:
            y = super().forward(x[None], **kw)  # type: ignore[misc]
        except ValueError as e:  # the shapes it names are the batch of one's
            raise ValueError(f"{e} (unbatched input of shape {x.shape}, run as a batch of "
                             "one)") from None
        self.__dict__["_unbatched"] = True
        return y[0]

    def _backward(self, grad_output: Any, **kw: Any) -> Any:
        if not self.__dict__.get("_unbatched", False):
            return super()._backward(grad_output, **kw)  # type: ignore[misc]
        g = grad_output
        if isinstance(g, np.ndarray) and self._is_unbatched(g.shape):
            g = g[None]
        dx = super()._backward(g, **kw)  # type: ignore[misc]
        return None if dx is None else dx[0]

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(shape)
        if self._is_unbatched(shape):
            out: tuple[int, ...] = super().output_shape((1, *shape))  # type: ignore[misc]
            return out[1:]
        batched: tuple[int, ...] = super().output_shape(shape)  # type: ignore[misc]
        return batched
