"""nn.Module: explicit, visible backprop (Torch7 style) with PyTorch's names.

`y = module(x)` runs `forward`, which caches what the backward needs; `module.backward(dy)`
runs `_backward`, returns dL/dx and fills every Parameter gradient: written by the first
backward after `zero_grad()`, accumulated by later ones. Output and gradient arrays belong to
the module and are reused by the next call with the same shapes (copy them to keep them).
Subclasses implement `forward(x)`, `_backward(grad_output)` and `output_shape(shape)`.
Call the module (`model(x)`), not `model.forward(x)`: the call records that a backward may
follow and names the layer in any error.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import numpy as np

from steadygrad.nn.parameter import FlatStorage, Parameter, flatten, shared_storage
from steadygrad.nn.state_dict import IncompatibleKeys, load_state, state_targets

# Errors that get the layer's name prefixed on their way out (type preserved).
_NAMED_ERRORS = (TypeError, ValueError, RuntimeError, IndexError)


def located(err: BaseException, prefix: str) -> BaseException:
    """The same kind of exception with `prefix` (where it happened) before its message."""
    msg = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
    try:
        new = type(err)(f"{prefix}{msg}")
    except Exception:
        new = RuntimeError(f"{prefix}{msg}")
    new._sg_located = True  # type: ignore[attr-defined]
    return new


class Module:
    """Base class of every layer and container."""

    training: bool
    _is_container = False
    # Set by a Sequential for the duration of this module's backward when its input is dead
    # afterwards (the previous layer's own output buffer, read by nothing later): a layer
    # that honours it (Linear, BatchNorm1d; see nn._util.grad_input_out) writes grad_input
    # over that input instead of into a buffer of its own.
    _donate_input = False

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_work", {})
        object.__setattr__(self, "training", True)
        # 0: no forward yet; 1: forward done, backward pending; 2: backward done
        object.__setattr__(self, "_phase", 0)
        # False while a backward may skip dL/dinput (the first layer of a model: one GEMM saved)
        object.__setattr__(self, "_input_grad", True)

    # -- registration ------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError("cannot assign attributes before Module.__init__() is called")
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                "(nn.Parameter or None expected)")
            params[name] = None
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray | None) -> None:
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        self._parameters[name] = value
        object.__setattr__(self, name, value)

    def _flatten_parameters(self) -> None:
        """Move every parameter of this module tree into one FlatStorage."""
        params = self.parameters()
        if params:
            flatten(params)

    @property
    def flat_storage(self) -> FlatStorage | None:
        """The one FlatStorage holding all of this module's parameters (None if none/several)."""
        params = self.parameters()
        return shared_storage(params) if params else None

    # -- traversal ---------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    def children(self) -> list[Module]:
        return list(self._modules.values())

    def named_children(self) -> list[tuple[str, Module]]:
        return list(self._modules.items())

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        out: list[tuple[str, Parameter]] = []
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    out.append((f"{mname}.{pname}" if mname else pname, p))
        return out

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        return [(f"{mname}.{bname}" if mname else bname, b)
                for mname, m in self.named_modules(prefix)
                for bname, b in m._buffers.items() if b is not None]

    def buffers(self) -> list[np.ndarray]:
        return [b for _, b in self.named_buffers()]

    # -- modes and gradients -----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        """Mark every gradient stale (reads None); the next backward writes it. No memset."""
        for p in self.parameters():
            p.zero_grad()

    # -- forward / backward ------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """Shape of the output for an input of `shape`; raises ValueError on a bad shape.
        None means unknown (a custom module that does not say): checks stop there."""
        return None

    def label(self) -> str:
        """One-line description used in error messages and summaries."""
        return repr(self) if not self._is_container else type(self).__name__

    def _run_forward(self, x: np.ndarray) -> np.ndarray:
        y = self.forward(x)
        object.__setattr__(self, "_phase", 1)
        return y

    def _run_backward(self, grad_output: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._phase == 0:
            raise RuntimeError("backward called before forward")
        if self._phase == 2:
            raise RuntimeError("backward called twice for one forward (run forward again first)")
        object.__setattr__(self, "_input_grad", input_grad)
        try:
            grad_input = self._backward(grad_output)
        finally:
            object.__setattr__(self, "_input_grad", True)
        object.__setattr__(self, "_phase", 2)
        return grad_input if input_grad else None

    def _error_prefix(self, err: BaseException) -> str:
        if not self._is_container:
            return f"{self.label()}: "
        # Errors from children arrive located ("Sequential[2] Linear(...): "); own ones get the name.
        return "" if getattr(err, "_sg_located", False) else f"{type(self).__name__}: "

    def __call__(self, x: np.ndarray) -> np.ndarray:
        try:
            return self._run_forward(x)
        except _NAMED_ERRORS as e:
            raise located(e, self._error_prefix(e)) from e

    def backward(self, grad_output: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dL/dx for dL/dy = grad_output; fills every parameter's gradient.

        input_grad=False returns None and lets the first layer skip computing dL/dx (for a
        Linear first layer that saves one of its three GEMMs); parameter gradients are the same.
        """
        try:
            return self._run_backward(grad_output, input_grad)
        except _NAMED_ERRORS as e:
            raise located(e, self._error_prefix(e)) from e

    def _in_child(self, key: str, child: Module, fn: Any, arg: Any) -> Any:
        """Run fn(arg) for child `key`, naming the child (index and label) in any error."""
        try:
            return fn(arg)
        except _NAMED_ERRORS as e:
            raise located(e, f"{type(self).__name__}[{key}] {child._error_prefix(e)}") from e

    def _buffer(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 work array kept across calls. Its storage only grows: a smaller batch
        (e.g. the last one of an epoch) gets a view of the front, so nothing is reallocated
        when the full batch size comes back."""
        entry = self._work.get(key)
        if entry is not None and entry[1].shape == shape:
            return entry[1]
        n = int(np.prod(shape))
        raw = entry[0] if entry is not None and entry[0].size >= n else np.empty(n, np.float32)
        view = raw[:n].reshape(shape)
        self._work[key] = (raw, view)
        return view

    def _forget_buffer(self, key: str) -> None:
        self._work.pop(key, None)

    # -- state_dict --------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer under PyTorch's keys (e.g. '0.weight')."""
        return OrderedDict((k, np.array(v, copy=True)) for k, v in state_targets(self).items())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values into the existing parameter views and buffers (never replaces them).

        Accepts numpy arrays or anything np.asarray understands (a PyTorch state_dict works
        as is, or converted with `.numpy()`). Everything is checked before anything is copied;
        problems raise RuntimeError with PyTorch's wording.
        """
        return load_state(self, state_dict, strict)

    # -- description -------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(activation bytes, workspace bytes) this module holds for an input of `shape`."""
        return 0, 0

    def gemm_calls(self, shape: tuple[int, ...],
                   input_grad: bool = True) -> list[tuple[int, int, int, bool, bool]]:
        """(m, n, k, trans_a, trans_b) of each GEMM a forward + backward at input `shape` runs,
        with the backward's dL/dx GEMM when input_grad (summary() sizes the GEMM's
        thread-local packing buffers from them)."""
        return []

    def summary(self, batch_size: int, input_shape: tuple[int, ...] | None = None,
                file: TextIO | None = sys.stdout, optimizer: Any = None,
                input_grad: bool = False) -> dict[str, Any]:
        """Parameter count and bytes of parameters, gradients, activations and workspace at
        `batch_size`, per layer and in total; prints a table to `file` (None: no print).
        With `optimizer`, its state buffers (e.g. Adam's exp_avg, exp_avg_sq) count too.
        input_grad: count the first layer's dL/dx buffer, as `model.backward(g)` computes it;
        False (default) is the training loop of `sg.fit` and `backward(g, input_grad=False)`."""
        from steadygrad.nn.summary import summarize

        return summarize(self, batch_size, input_shape, file, optimizer, input_grad)
