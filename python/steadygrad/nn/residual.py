"""Residual: y = shortcut(x) + module(x), a container whose two branches share the input
(nn/container.py's used-once rule and flat parameter buffer apply)."""

from __future__ import annotations

import numpy as np

from steadygrad import _core
from steadygrad.nn._layout import FIRST, LAST, first_shape, last_shape, to_first, to_last
from steadygrad.nn._util import work_like
from steadygrad.nn.container import Sequential, check_used_once
from steadygrad.nn.module import Module
from steadygrad.nn.plan import container_kind


class Residual(Module):
    """y = shortcut(x) + module(x), with shortcut the identity when None (a projection, e.g. a
    1x1 conv + BatchNorm2d in a ResNet, otherwise). Both branches must give the same shape.
    dL/dx = module.backward(dL/dy) + shortcut.backward(dL/dy). Inside a channels-last run both
    branches compute channels-last and the sum is taken in that layout."""

    _is_container = True
    # What a Sequential's plan may ask of it (nn.plan): the ReLU after it fused into the sum
    # (in place, the output then being its mask), whose gradient it applies in its backward.
    fusable_epilogues = frozenset({"relu"})
    epilogue_masks_grad = True
    _transient = ("_relu_out",)  # the pending backward's mask (Module.__getstate__)
    accepts_dead_grad = True  # a Sequential may let its backward overwrite grad_output

    def __init__(self, module: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"Residual: module must be an nn.Module, got {type(module).__name__}")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise TypeError("Residual: shortcut must be an nn.Module or None, got "
                            f"{type(shortcut).__name__}")
        self.module = module
        if shortcut is not None:
            self.shortcut = shortcut
        else:
            object.__setattr__(self, "shortcut", None)
        check_used_once(self)
        self._flatten_parameters()
        self._layouts = (FIRST, FIRST)  # the forward's layout_in, layout_out
        self._relu_out: np.ndarray | None = None  # the fused ReLU's output (its mask)

    def _branches(self) -> list[tuple[str, Module]]:
        return [("module", self.module)] + (
            [] if self.shortcut is None else [("shortcut", self.shortcut)])

    # Channels-last (nn._layout) when both branches are channels-last or layout-agnostic.
    @property
    def channels_last(self) -> bool:
        return container_kind([m for _, m in self._branches()]) == "last"

    @property
    def layout_agnostic(self) -> bool:
        return container_kind([m for _, m in self._branches()]) == "agnostic"

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        shape = tuple(shape)
        out = self._in_child("module", self.module, self.module.output_shape, shape)
        sc = self.shortcut
        skip = shape if sc is None else self._in_child("shortcut", sc, sc.output_shape, shape)
        if out is None or skip is None:  # unknown inside; forward checks the shapes match
            known = skip if out is None else out
            return None if known is None else tuple(known)
        if tuple(out) != tuple(skip):
            raise ValueError(self._mismatch(shape, out, skip))
        return tuple(out)

    def _mismatch(self, shape: object, out: object, skip: object) -> str:
        if self.shortcut is None:
            return f"module maps shape {shape} to {out}; y = x + module(x) needs them equal"
        return (f"module maps shape {shape} to {out} but shortcut to {skip}; "
                "y = shortcut(x) + module(x) needs them equal")

    def _convert(self, key: str, y: np.ndarray, to: str) -> np.ndarray:
        """y (channels-first when `to` is LAST, else channels-last) copied into layout `to`."""
        if to == LAST:
            return to_last(y, work_like(self, key, last_shape(y.shape), y))
        return to_first(y, work_like(self, key, first_shape(y.shape), y))

    def _branch_forward(self, key: str, m: Module | None, x: np.ndarray, layout_in: str,
                        layout_out: str) -> np.ndarray:
        """One branch from x in layout_in to its output in layout_out: a channels-last module
        is given both; the identity or a layout-agnostic module runs in layout_in and its
        output is converted when the layouts differ."""
        if m is not None and getattr(m, "channels_last", False):
            kw = {} if (layout_in, layout_out) == (FIRST, FIRST) else {
                "layout_in": layout_in, "layout_out": layout_out}
            y: np.ndarray = self._in_child(key, m, m._run_forward, x, **kw)
            return y
        y = x if m is None else self._in_child(key, m, m._run_forward, x)
        return y if layout_in == layout_out else self._convert(key + "_out", y, layout_out)

    def _branch_backward(self, key: str, m: Module | None, g: np.ndarray) -> np.ndarray:
        layout_in, layout_out = self._layouts
        if m is None or not getattr(m, "channels_last", False):
            if layout_in != layout_out:
                g = self._convert(key + "_grad", g, layout_in)
            if m is None:
                return g
        dx: np.ndarray = self._in_child(key, m, m._run_backward, g)
        return dx

    def _sum_over_branch_output(self) -> bool:
        """Whether the sum may be written over the module branch's output: a buffer of the
        branch's last layer that nothing reads after this forward (its backward does not)."""
        last = self.module
        while isinstance(last, Sequential) and len(last) > 0:
            if last.plan()[-1].absorbed:  # passes on the buffer of the layer before it
                return False
            last = last[len(last) - 1]
        return (getattr(last, "channels_last", False) and not last._is_container
                and bool(getattr(last, "owns_output", False))
                and not getattr(last, "reads_output_in_backward", True))

    def forward(self, x: np.ndarray, *, layout_in: str = FIRST, layout_out: str = FIRST,
                epilogue: str = "none") -> np.ndarray:
        if epilogue not in ("none", "relu"):
            raise ValueError(f"epilogue must be 'none' or 'relu', got {epilogue!r}")
        fx = self._branch_forward("module", self.module, x, layout_in, layout_out)
        sx = self._branch_forward("shortcut", self.shortcut, x, layout_in, layout_out)
        if not isinstance(fx, np.ndarray) or not isinstance(sx, np.ndarray) or fx.shape != sx.shape:
            raise ValueError(self._mismatch(getattr(x, "shape", None), getattr(fx, "shape", None),
                                            getattr(sx, "shape", None)))
        self.__dict__["_layouts"] = (layout_in, layout_out)
        in_place = (self._sum_over_branch_output() and fx.flags.writeable
                    and fx.flags.c_contiguous and not np.may_share_memory(fx, x)
                    and not np.may_share_memory(fx, sx))
        y = _core.add(sx, fx, out=fx if in_place else work_like(self, "out", fx.shape, x, fx, sx))
        if epilogue == "relu":
            _core.relu(y, out=y)
        self.__dict__["_relu_out"] = y if epilogue == "relu" else None
        return y

    def _backward(self, grad_output: np.ndarray, *, grad_is_dead: bool = False) -> np.ndarray:
        given, y = grad_output, self._relu_out
        if y is not None:  # the fused ReLU's gradient (masked by its output, which is z > 0)
            if not isinstance(grad_output, np.ndarray) or grad_output.shape != y.shape:
                raise ValueError(f"grad_output must have the output's shape {y.shape}, got "
                                 f"{getattr(grad_output, 'shape', type(grad_output).__name__)}")
            # in place when nothing reads grad_output after this (grad_is_dead)
            own = (grad_is_dead and grad_output.flags.writeable and grad_output.flags.c_contiguous
                   and not np.may_share_memory(grad_output, y))
            grad_output = _core.relu_backward(grad_output, y, out=grad_output if own else work_like(
                self, "grad_relu", y.shape, grad_output, y))
        g = self._branch_backward("module", self.module, grad_output)
        gs = self._branch_backward("shortcut", self.shortcut, grad_output)
        if g.shape != gs.shape:
            raise ValueError(f"the branches' dL/dx have shapes {g.shape} (module) and "
                             f"{gs.shape} (shortcut)")
        # The sum goes over the module branch's dL/dx when that is a buffer of the branch's
        # own (read by nothing after this), else into a buffer of this block's.
        if (g.flags.writeable and g.flags.c_contiguous and not np.may_share_memory(g, gs)
                and not np.may_share_memory(g, given)
                and not np.may_share_memory(g, grad_output)):
            return _core.add(gs, g, out=g)
        return _core.add(gs, g, out=work_like(self, "dx", g.shape, grad_output, g, gs))

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The sum's buffer unless it goes over the module branch's output; dL/dx's unless it
        goes over the module branch's (any branch that computes: not an elementwise one, which
        may hand its grad_output back). A fused ReLU's masked gradient is counted on its row."""
        out = self.output_shape(shape)
        n_out = int(np.prod(shape if out is None else out))
        over_grad = not getattr(self.module, "layout_agnostic", False)
        return (4 * (0 if self._sum_over_branch_output() else n_out),
                4 * (0 if over_grad else int(np.prod(shape))))
