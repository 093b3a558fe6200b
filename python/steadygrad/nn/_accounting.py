"""What a module reports of its memory for summary(): the bytes it holds for an input shape
and the thread-local scratch its kernels grow, with defaults a layer overrides. Kept apart from
Module's call machinery (module.py), which inherits it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from steadygrad._core import GemmScratch


class MemoryAccounting:
    """What every Module reports of its memory (summary), with defaults a layer overrides."""

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(activation bytes, workspace bytes) this module holds for an input of `shape`."""
        return 0, 0

    def thread_scratch(self, shape: tuple[int, ...],
                       input_grad: bool = True) -> GemmScratch | None:
        """The thread-local scratch (packing buffers, reused across calls) this module's
        kernels grow for a forward + backward at input `shape`, as the C++ that runs them
        sizes it (e.g. `_core.linear_scratch`); None when it uses none."""
        return None

    def summary(self, batch_size: int, input_shape: tuple[int, ...] | None = None,
                file: TextIO | None = sys.stdout, optimizer: Any = None,
                input_grad: bool = False) -> dict[str, Any]:
        """Parameter count and bytes of parameters, gradients, activations and workspace at
        `batch_size`, per layer and in total; prints a table to `file` (None: no print).
        With `optimizer`, its state buffers (e.g. Adam's exp_avg, exp_avg_sq) count too.
        input_grad: count the first layer's dL/dx buffer, as `model.backward(g)` computes it;
        False (default) is the training loop of `sg.fit` and `backward(g, input_grad=False)`."""
        from steadygrad.nn.summary import summarize  # summary imports the containers

        return summarize(self, batch_size, input_shape, file, optimizer, input_grad)  # type: ignore[arg-type]  # self is a Module
